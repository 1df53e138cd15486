/* remote_experts.c — `t2 experts` and `t2 expert show|rm|export|import|publish`: the daemon's registered
 * experts (the local expert FILES are `t2 model expert ...`). */
#include "remote.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void expert_human(const T2__Expert *e) {
    char a[32], b[32];
    printf("expert %s (owner %s%s)\n", e->name, e->owner, e->published ? ", published" : "");
    printf("  label      %s\n", e->label);
    printf("  parameters %llu\n", (unsigned long long)e->n_params);
    printf("  size       %s\n", rm_bytes(e->bytes, a, sizeof a));
    printf("  created    %s\n", rm_time(e->created, b, sizeof b));
    if (*e->meta) {
        /* The metadata JSON, keys sorted, when it parses. */
        json_error_t err;
        json_t *m = json_loads(e->meta, 0, &err);
        char *pretty = m ? json_dumps(m, JSON_SORT_KEYS) : NULL;
        printf("  meta       %s\n", pretty ? pretty : e->meta);
        free(pretty);
        json_decref(m);
    }
}

int t2_cmd_experts(int argc, char **argv) {
    cli_opts o;
    rm_ctx x;
    int rc = rm_begin(&x, &o, argc, argv, "experts");
    T2__ExpertList el = T2__EXPERT_LIST__INIT;
    el.all = cli_flag(&o, "all");
    rc = rm_ready(&x, &o, rc);
    T2__Request r;
    t2w_request_init(&r, 0);
    r.body_case = T2__REQUEST__BODY_EXPERT_LIST;
    r.expert_list = &el;
    T2__Reply *rep = NULL;
    if (!rc) rc = rm_call(&x, &r, &rep);
    if (!rc && (rep->body_case != T2__REPLY__BODY_EXPERTS || !rep->experts)) rc = rm_unexpected(&x, rep);
    if (!rc && x.json) {
        rm_print_json(rm_to_json((const ProtobufCMessage *)rep->experts));
    } else if (!rc) {
        printf("%-28s %-12s %-16s %-9s %-10s %-10s %s\n", "NAME", "OWNER", "LABEL", "PUBLISHED", "PARAMS", "SIZE",
               "CREATED");
        for (size_t i = 0; i < rep->experts->n_experts; i++) {
            const T2__Expert *e = rep->experts->experts[i];
            char a[32], b[32];
            printf("%-28s %-12s %-16s %-9s %-10llu %-10s %s\n", e->name, e->owner, e->label, e->published ? "yes" : "no",
                   (unsigned long long)e->n_params, rm_bytes(e->bytes, a, sizeof a), rm_time(e->created, b, sizeof b));
        }
    }
    t2w_reply_free(rep);
    rm_close(&x);
    return rc;
}

/* Send a request about one expert; print an Expert, an Ack or (for export) nothing: *out keeps the reply. */
static int expert_call(rm_ctx *x, T2__Request *r, T2__Reply **out) {
    T2__Reply *rep = NULL;
    int rc = rm_call(x, r, &rep);
    if (rc) return rc;
    if (rep->body_case == T2__REPLY__BODY_EXPERT && rep->expert) {
        if (x->json) rm_print_json(rm_to_json((const ProtobufCMessage *)rep->expert));
        else expert_human(rep->expert);
    } else if (rep->body_case == T2__REPLY__BODY_ACK && rep->ack) {
        if (x->json) rm_print_json(rm_to_json((const ProtobufCMessage *)rep->ack));
        else printf("%s\n", *rep->ack->message ? rep->ack->message : "ok");
    } else if (!(out && rep->body_case == T2__REPLY__BODY_EXPERT_DATA && rep->expert_data)) {
        rc = rm_unexpected(x, rep);
    }
    if (out && !rc) *out = rep;
    else t2w_reply_free(rep);
    return rc;
}

/* `t2 expert show|rm|publish NAME`. */
static int by_name(int argc, char **argv, const char *cmd, T2__Request__BodyCase body) {
    cli_opts o;
    rm_ctx x;
    int rc = rm_begin(&x, &o, argc, argv, cmd);
    int withdraw = body == T2__REQUEST__BODY_EXPERT_PUBLISH ? cli_flag(&o, "withdraw") : 0;
    const char *name = rc ? NULL : rm_one_arg(&o, cmd, "expert NAME");
    if (!rc && !name) rc = T2_EXIT_USAGE;
    T2__Request r;
    T2__ExpertRef ref = T2__EXPERT_REF__INIT;
    T2__ExpertPublish pub = T2__EXPERT_PUBLISH__INIT;
    t2w_request_init(&r, 0);
    r.body_case = body;
    if (body == T2__REQUEST__BODY_EXPERT_PUBLISH) {
        pub.name = (char *)name;
        pub.publish = !withdraw;
        r.expert_publish = &pub;
    } else {
        ref.name = (char *)name;
        r.expert_show = &ref;
    }
    char why[512];
    if (!rc && t2w_request_check(&r, why, sizeof why) != T2__ERROR_CODE__ERROR_NONE)
        fprintf(stderr, "t2 %s: %s\n", cmd, why), rc = T2_EXIT_USAGE;
    rc = rm_ready(&x, &o, rc);
    if (!rc) rc = expert_call(&x, &r, NULL);
    rm_close(&x);
    return rc;
}

int t2_cmd_expert_rshow(int argc, char **argv) { return by_name(argc, argv, "expert show", T2__REQUEST__BODY_EXPERT_SHOW); }
int t2_cmd_expert_rm(int argc, char **argv) { return by_name(argc, argv, "expert rm", T2__REQUEST__BODY_EXPERT_DELETE); }
int t2_cmd_expert_publish(int argc, char **argv) {
    return by_name(argc, argv, "expert publish", T2__REQUEST__BODY_EXPERT_PUBLISH);
}

/* Write data to path atomically (temporary file next to it, fsync, rename); "-" is stdout. */
static int write_file(const char *path, const void *data, size_t len, char *msg, size_t cap) {
    if (!strcmp(path, "-")) {
        if (fwrite(data, 1, len, stdout) != len || fflush(stdout)) {
            snprintf(msg, cap, "writing to stdout failed: %s", strerror(errno));
            return -1;
        }
        return 0;
    }
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0) return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const char *what = NULL;
    if (fd < 0) what = "create";
    const char *p = data;
    size_t left = len;
    while (!what && left) {
        ssize_t k = write(fd, p, left);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) what = "write";
        else p += k, left -= (size_t)k;
    }
    if (!what && fsync(fd)) what = "fsync";
    if (fd >= 0 && close(fd) && !what) what = "close";
    if (!what && rename(tmp, path)) what = "rename";
    if (what) {
        snprintf(msg, cap, "%s: %s failed: %s", path, what, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return what ? -1 : 0;
}

int t2_cmd_expert_export(int argc, char **argv) {
    cli_opts o;
    rm_ctx x;
    int rc = rm_begin(&x, &o, argc, argv, "expert export");
    const char *out = rm_str(&o, "out", "-o");
    const char *name = rc ? NULL : rm_one_arg(&o, "expert export", "expert NAME");
    if (!rc && !name) rc = T2_EXIT_USAGE;
    char *deflt = NULL;
    if (!rc && !out) {
        /* NAME.safetensors in the current folder ("owner/name" -> "owner_name"). */
        if (asprintf(&deflt, "%s.safetensors", name) < 0) return T2_EXIT_ERROR;
        for (char *p = deflt; *p; p++)
            if (*p == '/') *p = '_';
        out = deflt;
    }
    T2__Request r;
    T2__ExpertRef ref = T2__EXPERT_REF__INIT;
    t2w_request_init(&r, 0);
    ref.name = (char *)name;
    r.body_case = T2__REQUEST__BODY_EXPERT_EXPORT;
    r.expert_export = &ref;
    char why[512];
    if (!rc && t2w_request_check(&r, why, sizeof why) != T2__ERROR_CODE__ERROR_NONE)
        fprintf(stderr, "t2 expert export: %s\n", why), rc = T2_EXIT_USAGE;
    rc = rm_ready(&x, &o, rc);
    T2__Reply *rep = NULL;
    if (!rc) rc = expert_call(&x, &r, &rep);
    if (!rc && rep && rep->body_case != T2__REPLY__BODY_EXPERT_DATA) rc = rm_unexpected(&x, rep);
    if (!rc && rep) {
        if (write_file(out, rep->expert_data->data.data, rep->expert_data->data.len, why, sizeof why)) {
            fprintf(stderr, "t2 expert export: %s\n", why);
            rc = T2_EXIT_ERROR;
        } else if (strcmp(out, "-")) {
            if (x.json)
                rm_print_json(json_pack("{s:s,s:s,s:I}", "name", rep->expert_data->name, "file", out, "bytes",
                                        (json_int_t)rep->expert_data->data.len));
            else
                printf("wrote %s (%zu bytes)\n", out, rep->expert_data->data.len);
        }
    }
    t2w_reply_free(rep);
    free(deflt);
    rm_close(&x);
    return rc;
}

/* The whole file, at most max bytes. Caller frees. NULL with a message. */
static uint8_t *read_file(const char *path, size_t max, size_t *len, char *msg, size_t cap) {
    FILE *f = fopen(path, "rbe");
    if (!f) {
        snprintf(msg, cap, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    int bad = fstat(fileno(f), &st) != 0;
    if (bad || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        snprintf(msg, cap, "%s: %s", path,
                 bad ? strerror(errno) : !S_ISREG(st.st_mode) ? "not a regular file" : "larger than a request may carry (16 MiB)");
        fclose(f);
        return NULL;
    }
    uint8_t *b = malloc((size_t)st.st_size + 1);
    *len = b ? fread(b, 1, (size_t)st.st_size, f) : 0;
    if (!b || *len != (size_t)st.st_size) {
        snprintf(msg, cap, "cannot read %s", path);
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

int t2_cmd_expert_import(int argc, char **argv) {
    cli_opts o;
    rm_ctx x;
    int rc = rm_begin(&x, &o, argc, argv, "expert import");
    const char *name = cli_str(&o, "name"), *label = cli_str(&o, "label");
    const char *file = rc ? NULL : rm_one_arg(&o, "expert import", "FILE");
    if (!rc && !file) rc = T2_EXIT_USAGE;
    char *deflt = NULL, why[512];
    uint8_t *data = NULL;
    size_t len = 0;
    if (!rc && !name) {
        /* The file's name without its folder and .safetensors. */
        char *copy = strdup(file);
        deflt = copy ? strdup(basename(copy)) : NULL;
        free(copy);
        if (!deflt) return T2_EXIT_ERROR;
        size_t n = strlen(deflt);
        if (n > 12 && !strcmp(deflt + n - 12, ".safetensors")) deflt[n - 12] = 0;
        name = deflt;
    }
    /* Room for the envelope: the name, the label and a few tags. */
    if (!rc && !(data = read_file(file, T2W_MAX_FRAME - 4096, &len, why, sizeof why)))
        fprintf(stderr, "t2 expert import: %s\n", why), rc = T2_EXIT_USAGE;
    T2__Request r;
    T2__ExpertImport ei = T2__EXPERT_IMPORT__INIT;
    t2w_request_init(&r, 0);
    ei.name = (char *)name;
    ei.label = (char *)(label ? label : "");
    ei.data.data = data;
    ei.data.len = len;
    r.body_case = T2__REQUEST__BODY_EXPERT_IMPORT;
    r.expert_import = &ei;
    if (!rc && t2w_request_check(&r, why, sizeof why) != T2__ERROR_CODE__ERROR_NONE)
        fprintf(stderr, "t2 expert import: %s\n", why), rc = T2_EXIT_USAGE;
    rc = rm_ready(&x, &o, rc);
    if (!rc) rc = expert_call(&x, &r, NULL);
    free(data);
    free(deflt);
    rm_close(&x);
    return rc;
}

/* `t2 keys new NAME [--dir D] [--force] [--json]`: a CURVE key pair for a client or a daemon, made with
 * zmq_curve_keypair and written as NAME.key (both keys, mode 0600) and NAME.pub (the public key, for the
 * daemon's keys directory or for clients' --server-key). Works offline. */
#include "remote.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

/* A key name becomes a file name: the same alphabet as expert names. */
static int name_ok(const char *s) {
    if (!*s || *s == '.' || *s == '-' || strlen(s) > T2W_MAX_NAME) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-' || *s == '.'))
            return 0;
    return 1;
}

int t2_cmd_keys_new(int argc, char **argv) {
    cli_opts o;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    int json = cli_flag(&o, "json"), force = cli_flag(&o, "force");
    const char *dir = cli_str(&o, "dir");
    const char *name = rm_one_arg(&o, "keys new", "NAME");
    int rc = !name ? T2_EXIT_USAGE : cli_done(&o, "keys new") ? T2_EXIT_USAGE : 0;
    cli_free(&o);
    if (rc) return rc;
    if (!name_ok(name)) {
        fprintf(stderr, "t2 keys new: \"%s\" is not a valid key name (letters, digits, '_', '-', '.')\n", name);
        return T2_EXIT_USAGE;
    }
    if (!dir) dir = ".";
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "t2 keys new: %s is not a folder\n", dir);
        return T2_EXIT_USAGE;
    }
    char *key = NULL, *pubf = NULL;
    if (asprintf(&key, "%s/%s.key", dir, name) < 0 || asprintf(&pubf, "%s/%s.pub", dir, name) < 0) return T2_EXIT_ERROR;
    rc = T2_EXIT_OK;
    if (!force && (access(key, F_OK) == 0 || access(pubf, F_OK) == 0)) {
        fprintf(stderr, "t2 keys new: %s exists (--force replaces it)\n", access(key, F_OK) == 0 ? key : pubf);
        rc = T2_EXIT_ERROR;
    }
    char pub[T2W_KEY_LEN + 1], sec[T2W_KEY_LEN + 1], msg[512];
    if (!rc && zmq_curve_keypair(pub, sec)) {
        fprintf(stderr, "t2 keys new: cannot make a key pair: %s (is libzmq built with CURVE?)\n", zmq_strerror(zmq_errno()));
        rc = T2_EXIT_ERROR;
    }
    if (!rc && (t2w_keyfile_write(key, pub, sec, msg, sizeof msg) != T2_OK ||
                t2w_keyfile_write(pubf, pub, NULL, msg, sizeof msg) != T2_OK)) {
        fprintf(stderr, "t2 keys new: %s\n", msg);
        rc = T2_EXIT_ERROR;
    }
    memset(sec, 0, sizeof sec);
    if (!rc) {
        if (json) rm_print_json(json_pack("{s:s,s:s,s:s}", "public", pub, "key_file", key, "pub_file", pubf));
        else printf("%s\n", pub), fprintf(stderr, "wrote %s (secret, mode 0600) and %s\n", key, pubf);
    }
    free(key);
    free(pubf);
    return rc;
}

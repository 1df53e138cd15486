/* Expert files and their registry rows. Files live in <state_dir>/experts/<tenant>/<name>.safetensors and
 * are written atomically by the engine (temporary file, fsync, rename); the registry row is added only
 * after the file is in place, and a failed registration removes the file again, so a row never points
 * at nothing and no file is left without a row. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include <t2/error.h>

#include "t2d.h"

int t2d_expert_name_ok(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 128 || name[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) return 0;
    }
    return 1;
}

/* Whether a registry row is a LoRA expert: its meta says {"kind": "lora"}. */
static int is_lora_row(const t2d_expert *row) {
    json_t *m = *row->meta ? json_loads(row->meta, 0, NULL) : NULL;
    const char *kind = json_string_value(json_object_get(m, "kind"));
    int lora = kind && !strcmp(kind, "lora");
    json_decref(m);
    return lora;
}

t2_status t2d_expert_open(t2d *d, const char *tenant, const char *name, t2_expert **e, t2_lora **lora, char *err, size_t cap) {
    t2d_expert row = {0};
    *e = NULL;
    *lora = NULL;
    t2_status st = t2d_store_expert_get(d->store, tenant, name, &row);
    if (st != T2_OK) {
        if (st == T2_ERR_NOT_FOUND) snprintf(err, cap, "no expert \"%s\" (yours or published)", name);
        else snprintf(err, cap, "%s", t2d_store_errmsg());
        return st;
    }
    if (is_lora_row(&row)) *lora = t2_lora_load(row.path, t2x_model(d->x), &st);
    else *e = t2_expert_load(row.path, t2x_svd(d->x), &st);
    if (st != T2_OK) snprintf(err, cap, "expert \"%s\": %s", name, t2_last_error());
    t2d_expert_clear(&row);
    return st;
}

t2_status t2d_mkdirs(const char *path, char *err, size_t cap) {
    char buf[4400];
    if (strlen(path) >= sizeof buf) {
        snprintf(err, cap, "path too long");
        return T2_ERR_INVALID_ARG;
    }
    memcpy(buf, path, strlen(path) + 1);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0750) != 0 && errno != EEXIST) goto fail;
            *p = '/';
        }
    if (mkdir(buf, 0750) != 0 && errno != EEXIST) goto fail;
    return T2_OK;
fail:
    snprintf(err, cap, "cannot create %s: %s", buf, strerror(errno));
    return T2_ERR_IO;
}

/* meta_json with "kind" (and for LoRA its rank and alpha) added. Caller frees. */
static char *meta_with_kind(const char *meta_json, const t2_lora *lora) {
    json_t *m = meta_json && *meta_json ? json_loads(meta_json, 0, NULL) : NULL;
    if (!json_is_object(m)) {
        json_decref(m);
        m = json_object();
    }
    json_object_set_new(m, "kind", json_string(lora ? "lora" : "svf"));
    if (lora) {
        json_object_set_new(m, "rank", json_integer(t2_lora_rank(lora)));
        json_object_set_new(m, "alpha", json_real(t2_lora_alpha(lora)));
        json_object_set_new(m, "modules", json_string(t2_modules_name(t2_lora_modules(lora))));
    }
    char *text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return text;
}

t2_status t2d_expert_store(t2d *d, const char *tenant, const char *name, const char *label, t2_expert *e, t2_lora *lora,
                           const char *meta_json, char *err, size_t cap) {
    if (!t2d_expert_name_ok(name)) {
        snprintf(err, cap, "expert name \"%s\": use 1-128 of A-Z a-z 0-9 . _ - (not starting with '.')", name ? name : "");
        return T2_ERR_INVALID_ARG;
    }
    t2d_expert row = {0};
    if (t2d_store_expert_get(d->store, tenant, name, &row) == T2_OK && !strcmp(row.owner, tenant)) {
        t2d_expert_clear(&row);
        snprintf(err, cap, "you already have an expert \"%s\": remove it first or choose another name", name);
        return T2_ERR_INVALID_ARG;
    }
    t2d_expert_clear(&row);
    int64_t n_params = 0;
    if (lora) n_params = (int64_t)t2_lora_n_params(lora);
    else
        for (int i = 0; i < t2_expert_count(e); i++) n_params += t2_expert_len(e, i);
    t2d_tenant_usage u;
    if (t2d_store_tenant_usage(d->store, tenant, &u) != T2_OK) {
        snprintf(err, cap, "%s", t2d_store_errmsg());
        return T2_ERR_IO;
    }
    uint64_t estimate = (uint64_t)n_params * 4;
    if (u.expert_bytes + estimate > (uint64_t)d->cfg.quota_expert_bytes) {
        snprintf(err, cap, "quota: tenant %s stores %llu bytes of experts; another %llu would exceed its %lld", tenant,
                 (unsigned long long)u.expert_bytes, (unsigned long long)estimate, d->cfg.quota_expert_bytes);
        return T2_ERR_FULL;
    }
    char dir[4200], path[4400];
    snprintf(dir, sizeof dir, "%s/%s", d->experts_dir, tenant);
    t2_status st = t2d_mkdirs(dir, err, cap);
    if (st != T2_OK) return st;
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    if (lora) {
        t2_lora_set_meta(lora, "name", name);
        if (label && *label) t2_lora_set_meta(lora, "label", label);
        t2_lora_set_meta(lora, "owner", tenant);
        st = t2_lora_save(lora, path);
    } else {
        t2_expert_set_meta(e, "name", name);
        if (label && *label) t2_expert_set_meta(e, "label", label);
        t2_expert_set_meta(e, "owner", tenant);
        st = t2_expert_save(e, path);
    }
    if (st != T2_OK) {
        snprintf(err, cap, "cannot write %s: %s", path, t2_last_error());
        return st;
    }
    struct stat sb;
    uint64_t bytes = stat(path, &sb) == 0 ? (uint64_t)sb.st_size : estimate;
    char *meta = meta_with_kind(meta_json, lora);
    t2d_expert add = {.name = (char *)name, .owner = (char *)tenant, .label = (char *)(label ? label : ""), .path = path,
                      .n_params = (uint64_t)n_params, .bytes = bytes, .meta = meta ? meta : (char *)""};
    st = t2d_store_expert_add(d->store, &add, NULL);
    free(meta);
    if (st != T2_OK) {
        snprintf(err, cap, "%s", t2d_store_errmsg());
        unlink(path);
        return st;
    }
    t2d_log(T2_LOG_INFO, "tenant=%s expert=%s label=%s params=%lld bytes=%llu saved", tenant, name, label ? label : "",
            (long long)n_params, (unsigned long long)bytes);
    return T2_OK;
}

t2_expert *t2d_expert_mix(t2d *d, const char *tenant, const char *const *names, const float *alpha, int k, int per_matrix,
                          char *display, size_t dcap, char *err, size_t cap, t2_status *st) {
    t2_expert *parts[64] = {0};
    t2_expert *out = NULL;
    if (k < 1 || k > 64) {
        snprintf(err, cap, "a mixture needs 1 to 64 experts");
        *st = T2_ERR_INVALID_ARG;
        return NULL;
    }
    size_t o = 0;
    if (dcap) display[0] = 0;
    for (int i = 0; i < k; i++) {
        t2_lora *lora = NULL;
        if ((*st = t2d_expert_open(d, tenant, names[i], &parts[i], &lora, err, cap)) != T2_OK) goto done;
        if (lora) {
            t2_lora_free(lora);
            snprintf(err, cap, "\"%s\" is a LoRA expert: LoRA experts answer alone, they are not mixed", names[i]);
            *st = T2_ERR_INVALID_ARG;
            goto done;
        }
        if (o < dcap) {
            if (per_matrix) o += (size_t)snprintf(display + o, dcap - o, "%s%s:per-matrix", i ? "," : "", names[i]);
            else o += (size_t)snprintf(display + o, dcap - o, "%s%s:%g", i ? "," : "", names[i], alpha[i]);
        }
    }
    if (k == 1 && !per_matrix && alpha[0] == 1.0f) {   /* one expert as is: no mixing needed */
        out = parts[0];
        parts[0] = NULL;
        *st = T2_OK;
        goto done;
    }
    if (!(out = t2_expert_mix((const t2_expert *const *)parts, alpha, k, per_matrix, st))) snprintf(err, cap, "mixture: %s", t2_last_error());
done:
    for (int i = 0; i < k; i++) t2_expert_free(parts[i]);
    return out;
}

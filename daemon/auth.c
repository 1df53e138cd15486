/* Tenants by CURVE key: a ZAP handler (ZeroMQ's authentication protocol, RFC 27) on
 * inproc://zeromq.zap.01 answers each CURVE handshake by looking the client's public key up in the keys
 * directory, where <tenant>.pub holds that tenant's key. It answers 200 with the tenant's name as the
 * User-Id (which every message of that connection then carries), or 400 for an unknown key. The
 * directory is read again when an unknown key shows up (at most once a second), so adding a tenant
 * needs no restart. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zmq.h>

#include "auth.h"
#include "t2d.h"
#include "wire.h"

typedef struct key_entry {
    uint8_t key[32];
    char tenant[129];
} key_entry;

struct t2d_auth {
    void *zctx;
    void *rep;
    pthread_t thread;
    char dir[4096];
    key_entry *keys;
    size_t n_keys;
    time_t last_scan;
};

static int tenant_name_ok(const char *s, size_t n) {
    if (n == 0 || n > 128 || s[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) return 0;
    }
    return 1;
}

static void scan(t2d_auth *a) {
    a->last_scan = time(NULL);
    DIR *dir = opendir(a->dir);
    if (!dir) {
        t2d_log(T2_LOG_ERROR, "auth: cannot read keys_dir %s: %s", a->dir, strerror(errno));
        return;
    }
    key_entry *keys = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".pub")) continue;
        if (!tenant_name_ok(de->d_name, len - 4)) {
            t2d_log(T2_LOG_WARN, "auth: ignoring %s/%s: the tenant name must be 1-128 of A-Z a-z 0-9 . _ -", a->dir, de->d_name);
            continue;
        }
        char path[4400], pub[T2W_KEY_LEN + 1], msg[256];
        snprintf(path, sizeof path, "%s/%s", a->dir, de->d_name);
        if (t2w_keyfile_read(path, pub, NULL, msg, sizeof msg) != T2_OK) {
            t2d_log(T2_LOG_WARN, "auth: ignoring %s: %s", path, msg);
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            key_entry *k = realloc(keys, cap * sizeof *k);
            if (!k) break;
            keys = k;
        }
        zmq_z85_decode(keys[n].key, pub);
        snprintf(keys[n].tenant, sizeof keys[n].tenant, "%.*s", (int)(len - 4), de->d_name);
        n++;
    }
    closedir(dir);
    free(a->keys);
    a->keys = keys;
    a->n_keys = n;
}

static const char *lookup(t2d_auth *a, const uint8_t *key) {
    for (size_t i = 0; i < a->n_keys; i++)
        if (!memcmp(a->keys[i].key, key, 32)) return a->keys[i].tenant;
    return NULL;
}

/* Receive one ZAP request (its frames into parts); returns the frame count or -1. */
static int recv_parts(void *s, zmq_msg_t *parts, int max) {
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) < 0) {
            zmq_msg_close(&m);
            for (int i = 0; i < n; i++) zmq_msg_close(&parts[i]);
            return -1;
        }
        more = zmq_msg_more(&m);
        if (n < max) parts[n++] = m;
        else zmq_msg_close(&m);
    }
    return n;
}

static void send_str(void *s, const char *str, size_t len, int more) { zmq_send(s, str, len, more ? ZMQ_SNDMORE : 0); }

static void *zap_loop(void *arg) {
    t2d_auth *a = arg;
    for (;;) {
        zmq_msg_t p[8];
        int n = recv_parts(a->rep, p, 8);
        if (n < 0) {
            if (errno == ETERM) break;
            continue;
        }
        /* version, request id, domain, address, identity, mechanism, credentials... */
        const char *status = "400", *text = "unknown client key", *user = "";
        if (n >= 6) {
            const char *mech = zmq_msg_data(&p[5]);
            size_t ml = zmq_msg_size(&p[5]);
            if (ml == 5 && !memcmp(mech, "CURVE", 5) && n >= 7 && zmq_msg_size(&p[6]) == 32) {
                const uint8_t *key = zmq_msg_data(&p[6]);
                const char *t = lookup(a, key);
                if (!t && time(NULL) != a->last_scan) {
                    scan(a);
                    t = lookup(a, key);
                }
                if (t) {
                    status = "200";
                    text = "OK";
                    user = t;
                } else {
                    char z[41];
                    zmq_z85_encode(z, key, 32);
                    t2d_log(T2_LOG_WARN, "auth: refused a client with unknown key %s", z);
                }
            } else {
                text = "CURVE required";
            }
        } else {
            text = "malformed ZAP request";
        }
        send_str(a->rep, "1.0", 3, 1);
        if (n >= 2) zmq_send(a->rep, zmq_msg_data(&p[1]), zmq_msg_size(&p[1]), ZMQ_SNDMORE);
        else send_str(a->rep, "", 0, 1);
        send_str(a->rep, status, 3, 1);
        send_str(a->rep, text, strlen(text), 1);
        send_str(a->rep, user, strlen(user), 1);
        send_str(a->rep, "", 0, 0);
        for (int i = 0; i < n; i++) zmq_msg_close(&p[i]);
    }
    zmq_close(a->rep);   /* the context is terminating: the socket is closed by its own thread */
    return NULL;
}

t2d_auth *t2d_auth_start(void *zctx, const char *keys_dir, char *err, size_t cap) {
    t2d_auth *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, cap, "auth: out of memory");
        return NULL;
    }
    a->zctx = zctx;
    snprintf(a->dir, sizeof a->dir, "%s", keys_dir);
    struct stat sb;
    if (stat(keys_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(err, cap, "auth: keys_dir %s is not a directory", keys_dir);
        free(a);
        return NULL;
    }
    scan(a);
    t2d_log(T2_LOG_INFO, "auth: curve keys=%zu dir=%s", a->n_keys, keys_dir);
    a->rep = zmq_socket(zctx, ZMQ_REP);
    int linger = 0;
    zmq_setsockopt(a->rep, ZMQ_LINGER, &linger, sizeof linger);
    if (!a->rep || zmq_bind(a->rep, "inproc://zeromq.zap.01") != 0) {
        snprintf(err, cap, "auth: cannot bind the ZAP handler: %s", zmq_strerror(errno));
        if (a->rep) zmq_close(a->rep);
        free(a);
        return NULL;
    }
    if (pthread_create(&a->thread, NULL, zap_loop, a) != 0) {
        snprintf(err, cap, "auth: cannot start the ZAP thread");
        zmq_close(a->rep);
        free(a);
        return NULL;
    }
    return a;
}

void t2d_auth_free(t2d_auth *a) {
    if (!a) return;
    pthread_join(a->thread, NULL);
    free(a->keys);
    free(a);
}

t2_status t2d_server_keys(const char *path, char pub[41], char sec[41], char *err, size_t cap) {
    char msg[256];
    t2_status st = t2w_keyfile_read(path, pub, sec, msg, sizeof msg);
    if (st == T2_OK) return T2_OK;
    if (st != T2_ERR_IO) {
        snprintf(err, cap, "server key %s: %s", path, msg);
        return st;
    }
    /* missing: make one, and its .pub beside it for clients */
    if (zmq_curve_keypair(pub, sec) != 0) {
        snprintf(err, cap, "server key: zmq_curve_keypair failed (libzmq without CURVE?)");
        return T2_ERR_UNSUPPORTED;
    }
    if ((st = t2w_keyfile_write(path, pub, sec, msg, sizeof msg)) != T2_OK) {
        snprintf(err, cap, "server key %s: %s", path, msg);
        return st;
    }
    char pubpath[4200];
    size_t n = strlen(path);
    if (n > 4 && !strcmp(path + n - 4, ".key")) snprintf(pubpath, sizeof pubpath, "%.*s.pub", (int)(n - 4), path);
    else snprintf(pubpath, sizeof pubpath, "%s.pub", path);
    if ((st = t2w_keyfile_write(pubpath, pub, NULL, msg, sizeof msg)) != T2_OK) {
        snprintf(err, cap, "server key %s: %s", pubpath, msg);
        return st;
    }
    t2d_log(T2_LOG_INFO, "auth: created the server key %s (public key in %s)", path, pubpath);
    return T2_OK;
}

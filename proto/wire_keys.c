/* wire_keys.c — CURVE key files: a tiny INI text (parsed with inih) holding Z85 keys.
 *
 * Secret key files are written the way every state file of T2 is: a temporary file in the target
 * directory created with its final mode (0600 for secrets, so there is no window in which the secret is
 * world-readable), fsync, rename over the target, fsync of the directory. */
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

static void say(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *msg, size_t cap, const char *fmt, ...) {
    if (!msg || !cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
}

int t2w_key_valid(const char *s) {
    uint8_t raw[32];
    if (!s || strlen(s) != T2W_KEY_LEN) return 0;
    return zmq_z85_decode(raw, s) != NULL;
}

t2_status t2w_keyfile_write(const char *path, const char *pub, const char *sec, char *msg, size_t cap) {
    if (!path || !*path) {
        say(msg, cap, "no key file path");
        return T2_ERR_INVALID_ARG;
    }
    if (!t2w_key_valid(pub) || (sec && !t2w_key_valid(sec))) {
        say(msg, cap, "%s: bad Z85 key (want %d Z85 characters)", path, T2W_KEY_LEN);
        return T2_ERR_INVALID_ARG;
    }
    size_t n = strlen(path);
    char *tmp = malloc(n + 32);
    if (!tmp) {
        say(msg, cap, "out of memory");
        return T2_ERR_NOMEM;
    }
    snprintf(tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, sec ? 0600 : 0644);
    if (fd < 0) {
        say(msg, cap, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return T2_ERR_IO;
    }
    char text[256];
    int len = snprintf(text, sizeof text, "# T2 CURVE %s (ZeroMQ Z85)%s\npublic = %s\n%s%s%s",
                       sec ? "key pair" : "public key", sec ? ": keep this file secret" : "", pub,
                       sec ? "secret = " : "", sec ? sec : "", sec ? "\n" : "");
    t2_status st = T2_OK;
    const char *what = NULL;
    if (write(fd, text, (size_t)len) != len) what = "write";
    else if (fsync(fd)) what = "fsync";
    int saved = errno;
    if (close(fd) && !what) what = "close", saved = errno;
    if (!what && rename(tmp, path)) what = "rename", saved = errno;
    if (what) {
        say(msg, cap, "%s: %s failed: %s", path, what, strerror(saved));
        unlink(tmp);
        st = T2_ERR_IO;
    } else {
        /* Make the rename durable: fsync the directory (best effort: some filesystems refuse). */
        char *dcopy = strdup(path);
        if (dcopy) {
            int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                (void)fsync(dfd);
                close(dfd);
            }
            free(dcopy);
        }
    }
    free(tmp);
    return st;
}

typedef struct kf {
    char pub[T2W_KEY_LEN + 1], sec[T2W_KEY_LEN + 1];
    int have_pub, have_sec;
    char err[160];
} kf;

/* inih handler (Debian's inih passes no line number: ini_parse_file returns the first bad line). Only
 * the first problem is kept. */
static int on_entry(void *user, const char *section, const char *name, const char *value) {
    kf *k = user;
    if (k->err[0]) return 0;
    if (section && *section) {
        snprintf(k->err, sizeof k->err, "not a key file: unexpected section [%.40s]", section);
        return 0;
    }
    int is_pub = !strcmp(name, "public"), is_sec = !strcmp(name, "secret");
    if (!is_pub && !is_sec) {
        snprintf(k->err, sizeof k->err, "not a key file: unknown key \"%.40s\" (want public or secret)", name);
        return 0;
    }
    if (is_pub ? k->have_pub : k->have_sec) {
        snprintf(k->err, sizeof k->err, "%s given twice", name);
        return 0;
    }
    if (!t2w_key_valid(value)) {
        snprintf(k->err, sizeof k->err, "bad Z85 key for %s (want %d Z85 characters)", name, T2W_KEY_LEN);
        return 0;
    }
    memcpy(is_pub ? k->pub : k->sec, value, T2W_KEY_LEN + 1);
    *(is_pub ? &k->have_pub : &k->have_sec) = 1;
    return 1;
}

t2_status t2w_keyfile_read(const char *path, char pub[T2W_KEY_LEN + 1], char sec[T2W_KEY_LEN + 1], char *msg,
                           size_t cap) {
    if (!path || !*path) {
        say(msg, cap, "no key file path");
        return T2_ERR_INVALID_ARG;
    }
    FILE *f = fopen(path, "re");
    if (!f) {
        say(msg, cap, "%s: cannot open key file: %s", path, strerror(errno));
        return T2_ERR_IO;
    }
    /* A key file is a few hundred bytes; anything far larger is not one (and is not worth parsing). */
    struct stat stt;
    if (fstat(fileno(f), &stt) == 0 && (!S_ISREG(stt.st_mode) || stt.st_size > 4096)) {
        fclose(f);
        say(msg, cap, "%s: not a key file (%s)", path, S_ISREG(stt.st_mode) ? "larger than 4 KiB" : "not a regular file");
        return T2_ERR_FORMAT;
    }
    kf k;
    memset(&k, 0, sizeof k);
    int line = ini_parse_file(f, on_entry, &k);
    fclose(f);
    if (line != 0) {
        if (line < 0) say(msg, cap, "%s: cannot read key file", path);
        else if (k.err[0]) say(msg, cap, "%s: line %d: %s", path, line, k.err);
        else say(msg, cap, "%s: line %d: not a key file (want \"public = KEY\" lines)", path, line);
        return line < 0 ? T2_ERR_IO : T2_ERR_FORMAT;
    }
    if (!k.have_pub) {
        say(msg, cap, "%s: not a key file (no public key)", path);
        return T2_ERR_FORMAT;
    }
    if (sec) {
        if (!k.have_sec) {
            say(msg, cap, "%s: no secret key in this file (give the .key file, not the .pub)", path);
            return T2_ERR_NOT_FOUND;
        }
        char derived[T2W_KEY_LEN + 1];
        if (zmq_curve_public(derived, k.sec) != 0 || strcmp(derived, k.pub)) {
            say(msg, cap, "%s: the public key does not belong to the secret key", path);
            return T2_ERR_FORMAT;
        }
        memcpy(sec, k.sec, T2W_KEY_LEN + 1);
    }
    memcpy(pub, k.pub, T2W_KEY_LEN + 1);
    return T2_OK;
}

t2_status t2w_server_key_resolve(const char *text_or_path, char pub[T2W_KEY_LEN + 1], char *msg, size_t cap) {
    if (!text_or_path || !*text_or_path) {
        say(msg, cap, "no server key");
        return T2_ERR_INVALID_ARG;
    }
    if (t2w_key_valid(text_or_path)) {
        memcpy(pub, text_or_path, T2W_KEY_LEN + 1);
        return T2_OK;
    }
    /* Not a Z85 key: a file, if one exists; otherwise say both readings failed. */
    if (access(text_or_path, F_OK) != 0 && strlen(text_or_path) == T2W_KEY_LEN) {
        say(msg, cap, "server key \"%s\": bad Z85 key and no such file", text_or_path);
        return T2_ERR_FORMAT;
    }
    return t2w_keyfile_read(text_or_path, pub, NULL, msg, cap);
}

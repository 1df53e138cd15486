/* daemon/auth.h — CURVE tenants: the ZAP handler and the server's key pair. */
#ifndef T2D_AUTH_H
#define T2D_AUTH_H

#include <stddef.h>
#include <t2/status.h>

typedef struct t2d_auth t2d_auth;

/* Start the ZAP handler thread on zctx for the keys in keys_dir (<tenant>.pub files). Must run before a
 * CURVE server socket binds. The thread ends (closing its socket) when the context is terminated; then
 * t2d_auth_free joins it. NULL with a message on failure. */
t2d_auth *t2d_auth_start(void *zctx, const char *keys_dir, char *err, size_t cap);
/* Join the thread (after zmq_ctx_term started in another thread, or after it returned) and free. */
void t2d_auth_free(t2d_auth *a);

/* The server's key pair from path (a key file), created (with path's .pub beside it) if missing. */
t2_status t2d_server_keys(const char *path, char pub[41], char sec[41], char *err, size_t cap);

#endif

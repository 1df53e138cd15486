/* The remote half of the t2 command line: commands that talk to t2d over proto/t2.proto.
 *
 * Exit codes of every remote command (also in `t2 help`):
 *   0  ok
 *   1  the daemon answered with an error, or the job failed / was cancelled
 *   2  usage: a bad option or argument
 *   3  cannot reach the daemon, or no reply within the timeout
 *   4  not found (an expert, a job, a plugin)
 *   5  denied (another tenant's, or the daemon refused our key) or a quota would be exceeded
 *   130 interrupted (Ctrl-C)
 *
 * The daemon's address: --connect ENDPOINT, else $T2_CONNECT, else the config file (--config FILE, else
 * $T2_CONFIG, else /etc/t2/t2d.conf): section [client] key `connect`, else section [daemon] key
 * `listen` (a wildcard host, * or 0.0.0.0, becomes 127.0.0.1). CURVE: --key FILE
 * ($T2_KEY, or [client] key) is this client's key file, --server-key Z85|FILE ($T2_SERVER_KEY, or
 * [client] server_key) the daemon's public key. --timeout SECS bounds reaching the daemon and waiting for
 * each reply (default 30; streams such as generate and --follow wait as long as the daemon keeps the
 * connection, unless --timeout is given). */
#ifndef T2_REMOTE_H
#define T2_REMOTE_H

#include "cli.h"
#include "wire.h"

#include <jansson.h>
#include <signal.h>

enum { T2_EXIT_UNREACHABLE = 3, T2_EXIT_NOT_FOUND = 4, T2_EXIT_DENIED = 5, T2_EXIT_INTERRUPTED = 130 };

/* One remote command's connection and output settings. */
typedef struct rm_ctx {
    const char *cmd;          /* "generate", "job show", ... for messages */
    int json;                 /* --json */
    int timeout_ms;           /* reaching the daemon and short replies */
    int stream_timeout_ms;    /* each reply of a stream: -1 unless --timeout was given */
    char *endpoint;           /* malloc'd */
    char *key_file, *server_key;   /* malloc'd or NULL */
    t2w_client *client;
    int sent;                 /* rm_call_stream got its request out (so there is a stream to cancel) */
} rm_ctx;

/* Ctrl-C: set by the SIGINT handler that rm_catch_sigint installs (no SA_RESTART, so waits end). */
extern volatile sig_atomic_t rm_interrupted;
void rm_catch_sigint(void);

/* Parse the common options (--json --connect --key --server-key --timeout --config) out of o. Returns
 * 0, or an exit code (usage / config errors, message printed). Call before cli_done. */
int rm_parse(rm_ctx *x, cli_opts *o, const char *cmd);
/* The usual start of a command: cli_init of argv[1..] (argv[0] is the command's name) and rm_parse.
 * x and o are always initialised (rm_close and cli_free are safe). 0 or an exit code. */
int rm_begin(rm_ctx *x, cli_opts *o, int argc, char **argv, const char *cmd);
/* The usual end of option parsing: if rc is 0, cli_done, then cli_free, then (still 0) rm_connect.
 * Returns the resulting exit code. */
int rm_ready(rm_ctx *x, cli_opts *o, int rc);
/* Exactly one positional argument (a job id or an expert name); NULL with a usage message otherwise. */
const char *rm_one_arg(cli_opts *o, const char *cmd, const char *what);
/* Connect (after cli_done). 0 or an exit code with the message printed. */
int rm_connect(rm_ctx *x);
void rm_close(rm_ctx *x);

/* Send req and wait for its first reply (short timeout). On success returns 0 with *rep set (caller
 * frees with t2w_reply_free); a reply that carries an error is printed and turned into its exit code
 * (*rep NULL). A failure to talk to the daemon is printed and returns its exit code. */
int rm_call(rm_ctx *x, T2__Request *req, T2__Reply **rep);
/* The same for a request whose first reply may take long (generate, job watch): reaching the daemon is
 * bounded by timeout_ms, the reply by stream_timeout_ms. */
int rm_call_stream(rm_ctx *x, T2__Request *req, T2__Reply **rep);
/* The next reply of stream `id`, the same way (timeout: stream_timeout_ms). */
int rm_next(rm_ctx *x, uint64_t id, T2__Reply **rep);
/* Print the failure of the last client call and return its exit code. */
int rm_client_fail(rm_ctx *x);
/* Print a daemon error reply and return its exit code. */
int rm_reply_error(rm_ctx *x, const T2__Error *e);
/* Ask the daemon to stop stream `id` (Ctrl-C), waiting briefly for the acknowledgement. */
void rm_cancel_stream(rm_ctx *x, uint64_t id);
/* "unexpected reply" for a reply whose body is not what the command expects; returns 1. */
int rm_unexpected(rm_ctx *x, const T2__Reply *r);

/* Every value of a repeatable option --name (and of the short alias, e.g. "-o", when non-NULL), in
 * order, marked used. *n is the count; the array is malloc'd (caller frees), the strings borrowed. */
const char **rm_multi(cli_opts *o, const char *name, const char *alias, int *n);
/* The single value of --name or its short alias; NULL when absent. Borrowed. */
const char *rm_str(cli_opts *o, const char *name, const char *alias);
/* Unused arguments not starting with '-' (positional), marked used, in order. Caller frees the array. */
const char **rm_positional(cli_opts *o, int *n);
/* "name:alpha,name:alpha" (or one NAME with alpha 1 when single) into mix parts; 0 or prints and -1.
 * The parts and their array are malloc'd; free with rm_mix_free. */
int rm_parse_mix(const char *spec, T2__MixPart ***parts, size_t *n);
void rm_mix_free(T2__MixPart **parts, size_t n);

/* Output. */
/* A protobuf message as a JSON object (field names as in t2.proto; NaN and infinities as null; enums by
 * name; bytes fields as their length "<name>_bytes"). Caller frees with json_decref. */
json_t *rm_to_json(const ProtobufCMessage *m);
/* Print a JSON value on one line to stdout, then a newline; consumes the reference. */
void rm_print_json(json_t *j);
/* "3.2 s", "4m05s", "2h01m" into buf; returns buf. */
const char *rm_duration(double seconds, char *buf, size_t cap);
/* "2024-05-01 12:00:00" (local time) or "-" for 0. */
const char *rm_time(double unix_seconds, char *buf, size_t cap);
/* A byte count as "12.3 MiB". */
const char *rm_bytes(uint64_t n, char *buf, size_t cap);
/* A double or "-" when NaN. */
const char *rm_num(double v, const char *fmt, char *buf, size_t cap);

/* Follow a job until it ends (progress bar on a TTY, plain lines otherwise, JSON lines with --json).
 * Returns the exit code: 0 done, 1 failed or cancelled, or a connection / interrupt code. On success
 * *final (if non-NULL) receives the finished job (caller frees with t2w_reply_free on final_reply). */
int rm_follow_job(rm_ctx *x, int64_t id, T2__Reply **final_reply);

/* The commands. argv[0] is the command's own name. */
int t2_cmd_info(int argc, char **argv);
int t2_cmd_plugins(int argc, char **argv);
int t2_cmd_stats(int argc, char **argv);
int t2_cmd_ping(int argc, char **argv);
int t2_cmd_generate(int argc, char **argv);
int t2_cmd_train(int argc, char **argv);
int t2_cmd_eval(int argc, char **argv);
int t2_cmd_jobs(int argc, char **argv);
int t2_cmd_job_show(int argc, char **argv);
int t2_cmd_job_cancel(int argc, char **argv);
int t2_cmd_job_watch(int argc, char **argv);
int t2_cmd_job_log(int argc, char **argv);
int t2_cmd_experts(int argc, char **argv);
int t2_cmd_expert_rshow(int argc, char **argv);
int t2_cmd_expert_rm(int argc, char **argv);
int t2_cmd_expert_export(int argc, char **argv);
int t2_cmd_expert_import(int argc, char **argv);
int t2_cmd_expert_publish(int argc, char **argv);
int t2_cmd_keys_new(int argc, char **argv);

#endif

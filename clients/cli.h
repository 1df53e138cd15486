/* Shared helpers of the t2 command line: option lookup and id-list parsing. */
#ifndef T2_CLI_H
#define T2_CLI_H

#include <stddef.h>
#include <stdint.h>

#include <t2/model.h>
#include <t2/status.h>

/* Exit codes (documented in README.md). */
enum { T2_EXIT_OK = 0, T2_EXIT_ERROR = 1, T2_EXIT_USAGE = 2 };

typedef struct cli_opts {
    int argc;
    char **argv;
    unsigned char *used;   /* [argc] marks arguments consumed by lookups */
} cli_opts;

/* Borrowed view of argv[first..argc); call cli_done to report unknown options. */
int cli_init(cli_opts *o, int argc, char **argv);
void cli_free(cli_opts *o);
/* Value of --name VALUE (or --name=VALUE), or NULL. Borrowed from argv. */
const char *cli_str(cli_opts *o, const char *name);
/* 1 if the flag --name is present. */
int cli_flag(cli_opts *o, const char *name);
/* Parse numeric options; return 0 on success (leaving *out alone when absent), print an error and
 * return -1 when malformed or outside [lo, hi]. */
int cli_int(cli_opts *o, const char *name, long long lo, long long hi, long long *out);
int cli_float(cli_opts *o, const char *name, double lo, double hi, double *out);
/* Every argument must have been consumed; otherwise print "unknown option" and return -1. */
int cli_done(cli_opts *o, const char *cmd);

/* Print "t2: what: status: detail" to stderr; returns T2_EXIT_ERROR. */
int cli_fail(const char *what, t2_status s);

/* Load the model in dir (threads 0 = all cores) or print why not and set *rc. Caller frees with
 * t2_model_free. */
t2_model *cli_load_model(const char *dir, int threads, int prefill_bf16, int *rc);
/* The same from the options --model DIR [--threads N] [--prefill-bf16] (before cli_done). */
t2_model *cli_open_model(cli_opts *o, int *rc);

/* Parse "1,2,3" into a malloc'd array (caller frees). Returns -1 with a message on bad input. */
int cli_parse_ids(const char *s, const char *what, int32_t **ids, int *n);

#endif

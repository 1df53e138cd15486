/* Tokenizer encode throughput on GSM8K train text (question + "\n" + answer per document).
 *
 * usage: bench_tok MODEL_DIR GSM8K_TRAIN_JSONL [PASSES]
 * Prints "ours <name> MB/s <x> ids <n>" for run.sh to set beside the JavaScript reference. Every pass
 * is timed, the first included (the word cache starts empty, as the reference's does). */
#include <t2/error.h>
#include <t2/tokenizer.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR GSM8K_TRAIN_JSONL [PASSES]\n", argv[0]);
        return 2;
    }
    int passes = argc > 3 ? atoi(argv[3]) : 3;
    if (passes < 1) passes = 1;
    t2_status st;
    t2_tokenizer *t = t2_tokenizer_load(argv[1], &st);
    if (!t) {
        fprintf(stderr, "bench_tok: %s\n", t2_last_error());
        return 1;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    char **docs = NULL;
    size_t *lens = NULL, ndocs = 0, cap = 0, bytes = 0;
    char *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        const char *q = json_string_value(json_object_get(o, "question"));
        const char *a = json_string_value(json_object_get(o, "answer"));
        if (q && a) {
            if (ndocs == cap) {
                cap = cap ? cap * 2 : 1024;
                docs = realloc(docs, cap * sizeof *docs);
                lens = realloc(lens, cap * sizeof *lens);
                if (!docs || !lens) return 1;
            }
            size_t n = strlen(q) + 1 + strlen(a);
            docs[ndocs] = malloc(n + 1);
            if (!docs[ndocs]) return 1;
            snprintf(docs[ndocs], n + 1, "%s\n%s", q, a);
            lens[ndocs++] = n;
            bytes += n;
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    size_t total_ids = 0;
    double t0 = now();
    for (int p = 0; p < passes; p++) {
        total_ids = 0;
        for (size_t i = 0; i < ndocs; i++) {
            int32_t *ids;
            size_t n;
            if (t2_tokenizer_encode(t, docs[i], lens[i], 1, &ids, &n)) {
                fprintf(stderr, "bench_tok: %s\n", t2_last_error());
                return 1;
            }
            total_ids += n;
            free(ids);
        }
    }
    double dt = now() - t0;
    printf("ours MB/s %.2f ids %zu docs %zu bytes %zu\n", (double)bytes * passes / dt / 1e6, total_ids, ndocs, bytes);
    for (size_t i = 0; i < ndocs; i++) free(docs[i]);
    free(docs);
    free(lens);
    t2_tokenizer_free(t);
    return 0;
}

/* `t2 model lora new`: a fresh LoRA for a model (A uniform in ±1/√cols from the seed, B = 0, so it is
 * the base model until trained), written as a t2-lora safetensors file. */
#include "cmd_lora.h"
#include "cli.h"

#include <t2/error.h>
#include <t2/lora.h>
#include <t2/model.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int lora_new(int argc, char **argv) {
    cli_opts o;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    const char *dir = cli_str(&o, "model"), *out = cli_str(&o, "out"), *mods = cli_str(&o, "modules"),
               *label = cli_str(&o, "label");
    long long rank = 0, seed = 0;
    double alpha = 0;
    t2_modules modules = T2_MODULES_MLP;
    int rc = T2_EXIT_OK;
    if (cli_int(&o, "rank", 1, T2_LORA_MAX_RANK, &rank) || cli_float(&o, "alpha", 1e-30, 1e30, &alpha) ||
        cli_int(&o, "seed", 0, INT64_MAX, &seed))
        rc = T2_EXIT_USAGE;
    else if (!dir || !out || !rank || !alpha)
        fprintf(stderr, "t2 model lora new: --model DIR --rank R --alpha A --out FILE are required\n"), rc = T2_EXIT_USAGE;
    else if (mods && t2_modules_parse(mods, &modules)) fprintf(stderr, "t2: --modules: %s\n", t2_last_error()), rc = T2_EXIT_USAGE;
    else if (cli_done(&o, "model lora new")) rc = T2_EXIT_USAGE;
    cli_free(&o);
    if (rc) return rc;
    t2_status s;
    t2_model *m = cli_load_model(dir, 0, 0, &rc);
    if (!m) return rc;
    t2_lora *l = t2_lora_new(m, modules, (int)rank, (float)alpha, (uint64_t)seed, &s);
    if (!l) rc = cli_fail("LoRA", s);
    else {
        char sd[32];
        snprintf(sd, sizeof sd, "%lld", seed);
        t2_lora_set_meta(l, "seed", sd);
        t2_lora_set_meta(l, "trainer", "init");
        if (label) t2_lora_set_meta(l, "label", label);
        if ((s = t2_lora_save(l, out))) rc = cli_fail("cannot write LoRA", s);
        else
            printf("wrote %s: rank %d, alpha %g, %d matrices (%s), %zu parameters\n", out, t2_lora_rank(l),
                   (double)t2_lora_alpha(l), t2_lora_count(l), t2_modules_name(modules), t2_lora_n_params(l));
    }
    t2_lora_free(l);
    t2_model_free(m);
    return rc;
}

int t2_cmd_model_lora(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "new")) return lora_new(argc - 1, argv + 1);
    fprintf(stderr, "t2 model lora: want new (see t2 help)\n");
    return T2_EXIT_USAGE;
}

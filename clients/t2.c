/* t2 — the T2 command line. `t2 model ...` runs the engine in-process; the daemon commands come
 * with t2d. */
#include "cli.h"
#include "cmd_model.h"
#include "cmd_svf.h"
#include "cmd_tok.h"
#include "cmd_train.h"

#include <stdio.h>
#include <string.h>

static const char *s_usage =
    "usage: t2 <command> [options]\n"
    "\n"
    "In-process (no daemon):\n"
    "  t2 model info --model DIR [--json]\n"
    "      architecture, parameter count, dtypes\n"
    "  t2 model logits --model DIR --ids 1,2,3 --out F.npy\n"
    "      float32 logits of every position, shape [n_tokens, vocab], numpy .npy\n"
    "  t2 model generate --model DIR --ids 1,2,3 [--max-tokens N] [--temperature T] [--top-k K]\n"
    "                    [--top-p P] [--seed S] [--stop-eos] [--stop-ids 1,2;3] [--json]\n"
    "      greedy unless --temperature > 0; prints the generated ids (JSON: ids, logprobs, stop)\n"
    "  logits and generate also take an SVF expert or mixture:\n"
    "      --expert E.safetensors | --mix E1.safetensors:0.3,E2.safetensors:0.7\n"
    "      [--apply factored|merged] [--modules mlp|attn|all] [--svd-cache FILE]\n"
    "  t2 model tokenize --model DIR [--no-special]        (UTF-8 text on stdin -> ids on one line)\n"
    "  t2 model detokenize --model DIR [--skip-special] [--no-cleanup]   (ids on stdin -> text)\n"
    "  t2 model chat --model DIR [--template NAME|FILE] [--system TEXT] --user TEXT [--assistant TEXT --user TEXT ...]\n"
    "      print the templated prompt (llama3, chatml, llama2, mistral, plain, or a template file)\n"
    "  t2 model svd --model DIR [--modules mlp|attn|all] [--cache FILE] [--dtype f32|bf16]\n"
    "               [--precision single|double] [--rebuild] [--verify]\n"
    "      build (or check) the SVD cache; prints time and reconstruction error per matrix\n"
    "  t2 model logprob-grad --model DIR --ids P1,P2,... --completion-start K [--expert E | --mix ...]\n"
    "                        [--modules M] [--wrt z|alpha|weights] --out GRAD.safetensors\n"
    "      log p(ids[K:] | ids[:K]) and its gradient with respect to the z vectors (tensors named like\n"
    "      an expert's), the mixture weights (\"alpha\"), or every weight (the checkpoint's names)\n"
    "\n"
    "Experts:\n"
    "  t2 expert show FILE [--json]\n"
    "  t2 expert mix --out FILE E1.safetensors:0.5 E2.safetensors:0.5 ...\n"
    "  t2 expert new --model DIR --from Z.safetensors --out FILE [--label L] [--modules M]\n"
    "      wrap raw z tensors (\"model.layers.3.mlp.down_proj.z\", ...) into an expert, checking each\n"
    "\n"
    "SVD caches live in $T2_CACHE_DIR, else $XDG_CACHE_HOME/t2, else ~/.cache/t2.\n"
    "\n"
    "Common options: --threads N (kernel threads; default: all cores);\n"
    "  --prefill-bf16 (BF16 models: prompts with BF16 activations and AVX512-BF16 dot products, as\n"
    "  frameworks running in bfloat16 do; faster, logits within ~1e-2; decode stays f32)\n"
    "Environment: T2_KERNELS=portable|avx2|avx512|avx512bf16 forces a kernel set.\n"
    "Exit codes: 0 ok, 1 error (message on stderr), 2 usage.\n";

typedef int (*cmd_fn)(int, char **);
static const struct { const char *group, *name; cmd_fn fn; } s_cmds[] = {
    {"model", "info", t2_cmd_model_info},
    {"model", "logits", t2_cmd_model_logits},
    {"model", "generate", t2_cmd_model_generate},
    {"model", "svd", t2_cmd_model_svd},
    {"model", "tokenize", t2_cmd_model_tokenize},
    {"model", "detokenize", t2_cmd_model_detokenize},
    {"model", "chat", t2_cmd_model_chat},
    {"model", "logprob-grad", t2_cmd_model_logprob_grad},
    {"expert", "show", t2_cmd_expert_show},
    {"expert", "mix", t2_cmd_expert_mix},
    {"expert", "new", t2_cmd_expert_new},
};

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(s_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? T2_EXIT_USAGE : T2_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("t2 %s\n", T2_VERSION);
        return T2_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof s_cmds / sizeof *s_cmds; i++)
        if (argc >= 3 && !strcmp(argv[1], s_cmds[i].group) && !strcmp(argv[2], s_cmds[i].name))
            return s_cmds[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "t2: unknown command \"%s%s%s\"\n\n%s", argv[1], argc >= 3 ? " " : "", argc >= 3 ? argv[2] : "", s_usage);
    return T2_EXIT_USAGE;
}

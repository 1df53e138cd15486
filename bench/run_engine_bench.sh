#!/usr/bin/env bash
# Engine speed on a random Llama-3.2-1B-shaped checkpoint (F32 and BF16), in one run:
#   (a) this machine's limits (memory bandwidth -> decode; OpenBLAS sgemm -> prefill),
#   (b) T2 (bench_engine), (c) a plain PyTorch implementation (bench/torch_llama.py).
# Prints one table with the ratios. Models are written once to $T2_BENCH_DIR (default /tmp/t2-bench,
# ~7.4 GB). Not a test.
#   bench/run_engine_bench.sh [--threads 2] [--prompt 128] [--gen 32] [--reps 3] [--dtypes "f32 bf16"]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2 prompt=128 gen=32 reps=3 dtypes="f32 bf16"
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --prompt) prompt=$2; shift 2 ;;
    --gen) gen=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --dtypes) dtypes=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
dir=${T2_BENCH_DIR:-/tmp/t2-bench}
mkdir -p "$dir"
if [ ! -f build/build.ninja ]; then meson setup build >/dev/null; fi
meson compile -C build >/dev/null
for dt in $dtypes; do
  /usr/bin/python3 bench/make_bench_model.py --dtype "$dt" --out "$dir/llama1b-$dt" >/dev/null
  echo "== T2, $dt"
  build/bench/bench_engine --model "$dir/llama1b-$dt" --threads "$threads" --prompt "$prompt" --gen "$gen" \
    --reps "$reps" --json "$dir/t2-$dt.json"
  if [ "$dt" = bf16 ]; then
    echo "== T2, bf16, --prefill-bf16 (BF16 activations in prompt processing, as PyTorch's bfloat16 run)"
    build/bench/bench_engine --model "$dir/llama1b-$dt" --threads "$threads" --prompt "$prompt" --gen "$gen" \
      --reps "$reps" --json "$dir/t2-bf16x.json" --prefill-bf16
  fi
  echo "== PyTorch, $dt"
  /usr/bin/python3 bench/torch_llama.py --model "$dir/llama1b-$dt" --threads "$threads" --prompt "$prompt" \
    --gen "$gen" --reps "$reps" --dtype "$dt" --json "$dir/torch-$dt.json"
done
/usr/bin/python3 - "$dir" $dtypes <<'PY'
import json, sys
d = sys.argv[1]
print()
print("| dtype | T2 prefill tok/s | % of sgemm limit | PyTorch prefill | T2/PyTorch | T2 decode tok/s | % of bandwidth limit | PyTorch decode | T2/PyTorch |")
print("|---|---|---|---|---|---|---|---|---|")
for dt in sys.argv[2:]:
    t = json.load(open(f"{d}/t2-{dt}.json")); p = json.load(open(f"{d}/torch-{dt}.json"))
    pp, tg = p["prefill_tok_s"], p["decode_tok_s"]
    rows = [(dt, t)]
    if dt == "bf16":
        try: rows.append(("bf16, --prefill-bf16", json.load(open(f"{d}/t2-bf16x.json"))))
        except OSError: pass
    for name, t in rows:
        print(f"| {name} | {t['prefill']:.1f} | {100*t['prefill']/t['prefill_limit']:.0f}% | {pp:.1f} | {t['prefill']/pp:.2f}x "
              f"| {t['decode']:.2f} | {100*t['decode']/t['decode_limit']:.0f}% | {tg:.2f} | {t['decode']/tg:.2f}x |")
t = json.load(open(f"{d}/t2-{sys.argv[2]}.json"))
print(f"\nlimits measured in this run: memory bandwidth {t['bandwidth_gbs']:.1f} GB/s, sgemm {t['sgemm_gflops']:.0f} GFLOP/s "
      f"(OpenBLAS {t['openblas']} kernels); T2 kernels: {t['kernels']}")
PY

#!/usr/bin/python3
"""Run the PyTorch reference model (float32, Hugging Face semantics) on a checkpoint folder.

  reference.py logits   --model DIR --ids 1,2,3 --out F.npy
      float32 logits [n, vocab] for every position, saved with np.save
  reference.py generate --model DIR --ids 1,2,3 --max-tokens N [--stop-eos] [--json]
      greedy decoding with a KV cache; prints the generated ids space-separated
      (--json: one object {"ids": [...], "logprobs": [...], "stop": "length"|"eos"})
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import t2ref  # noqa: E402


def parse_ids(s):
    ids = [int(x) for x in s.replace(" ", "").split(",") if x != ""]
    if not ids:
        raise SystemExit("--ids: need at least one token id")
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    lg = sub.add_parser("logits", help="float32 logits for every position")
    lg.add_argument("--model", required=True)
    lg.add_argument("--ids", required=True)
    lg.add_argument("--out", required=True)
    gn = sub.add_parser("generate", help="greedy generation")
    gn.add_argument("--model", required=True)
    gn.add_argument("--ids", required=True)
    gn.add_argument("--max-tokens", type=int, required=True)
    gn.add_argument("--stop-eos", action="store_true")
    gn.add_argument("--json", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    model = t2ref.Model.load(a.model)
    ids = parse_ids(a.ids)
    for t in ids:
        if not 0 <= t < model.V:
            raise SystemExit("token id %d out of range [0, %d)" % (t, model.V))

    if a.cmd == "logits":
        logits = model.logits(ids).numpy().astype(np.float32)
        np.save(a.out, logits)
        return

    out, step_logits = model.generate(ids, a.max_tokens, stop_eos=a.stop_eos)
    if a.json:
        lp = torch.log_softmax(step_logits.double(), dim=-1)
        logprobs = [float(lp[i, t]) for i, t in enumerate(out)]
        stop = "eos" if (a.stop_eos and out and out[-1] in model.eos_ids()) else "length"
        print(json.dumps({"ids": out, "logprobs": logprobs, "stop": stop}))
    else:
        print(" ".join(str(t) for t in out))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""The main job (README's first command, scripts/demo) on the shipped model and experts: t2d starts on
models/t2-tiny, the classifier's first pass sends each of the three questions to its own expert, every
answer is graded, the tally of the first test questions of each family is printed, and a sanitizer build's
t2d reports nothing.

  python3 tests/recipe/test_demo.py WORKDIR
The tools are found at $T2_BIN and $T2D_BIN, else under build/ in the repository.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def main():
    work = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "demo-test")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "recipe", "t2tiny.py"), "demo", "--work", work, "--demo-n", "3"],
                       capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    failed = []
    if r.returncode != 0:
        failed.append(f"the demo exited {r.returncode}")
    for fam in ("math", "code", "reasoning"):
        if f"-- first pass: label '{fam}', expert {fam}:1" not in out:
            failed.append(f"the {fam} question did not go to the {fam} expert")
        if not re.search(rf"^{fam} +two passes \(classifier\): \d/3 correct; the base model alone: \d/3$", out, re.M):
            failed.append(f"no tally for {fam}")
    if out.count("-- grader: ") < 3:
        failed.append("fewer than three graded answers")
    stderr = os.path.join(work, "demo-t2d", "t2d.stderr")   # a sanitizer build's reports land here
    text = open(stderr, errors="replace").read() if os.path.exists(stderr) else ""
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        if marker in text:
            failed.append(f"t2d: {text[text.index(marker):][:1500]}")
    if failed:
        print(out[-4000:])
        print("FAIL: " + "; ".join(failed))
        return 1
    print("\n".join(ln for ln in out.splitlines() if ln.startswith(("-- first pass", "-- grader")) or "two passes (" in ln))
    print("ok: three questions routed to their experts and graded, tallies printed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Checks of recipe/tasks.py, the synthetic task generator: determinism, splits, ids, formats and answers.

Run: python3 tests/recipe/test_tasks.py (stdlib unittest; the generator is run as its CLI would be). The check
that the graders accept the reference solutions runs the client found at $T2_BIN, else build/clients/t2 under
the repository root; without it that check is skipped."""
import collections
import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "recipe", "tasks.py")
T2 = os.environ.get("T2_BIN") or os.path.join(ROOT, "build", "clients", "t2")

EVAL = ["math", "code", "reasoning", "math-hard", "code-hard", "reasoning-hard", "cls"]
SIZES = {"math": {"train": 400, "validation": 200, "test": 200}, "code": {"train": 400, "validation": 200, "test": 200},
         "reasoning": {"train": 400, "validation": 200, "test": 200}, "math-hard": {"validation": 50, "test": 200},
         "code-hard": {"validation": 50, "test": 200}, "reasoning-hard": {"validation": 50, "test": 200},
         "cls": {"train": 400, "validation": 100, "test": 200}}
SFT_SIZES = {"math": 6000, "code": 2500, "reasoning": 4000, "math-hard": 600, "code-hard": 600,
             "reasoning-hard": 600, "cls": 1500}

# The system prompts, copied by hand from daemon/tasks/loaders.c and from what t2_classify_system() in
# plugins/common/classify.c builds for the labels math, code, reasoning.
SYS_GSM8K = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
             "request. Reason step by step, then give the final answer as a number on the last line in the form "
             "\"#### N\".")
SYS_MATH = "Solve the question below by reasoning step by step, and put the final answer within \\boxed{}."
SYS_ARC = ("The following are multiple choice questions (with answers). Think step by step and then finish your "
           "answer with \"the answer is (X)\" where X is the correct letter choice.")
SYS_CODE = ("You are an exceptionally intelligent coding assistant that consistently delivers accurate and "
            "reliable responses to user instructions.")
SYS_CLS = ("You route questions to specialists. Read the question the user gives you and decide which kind of "
           "specialist should answer it. The kinds are: math, code, reasoning, or others if none of them fits. "
           "Do not answer the question itself. Reply with one line: Classification: \\boxed{kind}")
SYSTEM = {"math": SYS_GSM8K, "math-hard": SYS_MATH, "code": SYS_CODE, "code-hard": SYS_CODE,
          "reasoning": SYS_ARC, "reasoning-hard": SYS_ARC, "cls": SYS_CLS}


def run(out, seed=0, scale=None):
    cmd = [sys.executable, SCRIPT, "--out", out, "--seed", str(seed)] + (["--scale", str(scale)] if scale else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def tasks_module():
    spec = importlib.util.spec_from_file_location("recipe_tasks", SCRIPT)
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    return tasks


def load(path):
    with open(path, encoding="ascii") as f:
        return [json.loads(line) for line in f]


def last_boxed(s):
    m = re.findall(r"\\boxed\{([^{}]*)\}", s)
    return m[-1] if m else None


def fenced_code(solution):
    m = re.fullmatch(r"```python\n(.*)\n```", solution, re.S)
    return m.group(1) if m else None


class GeneratedTasks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.a = os.path.join(cls.tmp.name, "a")
        run(cls.a)
        cls.files = {}
        for fam in EVAL:
            cls.files[fam] = load(os.path.join(cls.a, f"{fam}.jsonl"))
            cls.files["sft-" + fam] = load(os.path.join(cls.a, f"sft-{fam}.jsonl"))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_deterministic(self):
        b = os.path.join(self.tmp.name, "b")
        run(b)
        names = sorted(os.listdir(self.a))
        self.assertEqual(names, sorted(os.listdir(b)))
        self.assertEqual(len(names), 14)
        for n in names:
            with open(os.path.join(self.a, n), "rb") as fa, open(os.path.join(b, n), "rb") as fb:
                self.assertEqual(fa.read(), fb.read(), n)
        c = os.path.join(self.tmp.name, "c")
        run(c, seed=1, scale=0.1)
        with open(os.path.join(self.a, "math.jsonl"), "rb") as fa, open(os.path.join(c, "math.jsonl"), "rb") as fc:
            self.assertNotEqual(fa.read()[:2000], fc.read()[:2000])

    def test_sizes_ids_and_fields(self):
        for fam in EVAL:
            lines, sft = self.files[fam], self.files["sft-" + fam]
            counts = {}
            for t in lines:
                counts[t["split"]] = counts.get(t["split"], 0) + 1
            self.assertEqual(counts, SIZES[fam], fam)
            self.assertEqual(len(sft), SFT_SIZES[fam], fam)
            for name, ls in ((fam, lines), ("sft-" + fam, sft)):
                self.assertEqual(len({t["id"] for t in ls}), len(ls), f"{name}: ids not unique")
                for t in ls:
                    self.assertEqual(t["family"], fam)
                    self.assertEqual(t["system"], SYSTEM[fam], t["id"])
                    self.assertIn(t["label"], ("math", "code", "reasoning"))
                    self.assertTrue(t["prompt"] and t["solution"], t["id"])
                    self.assertTrue(t.get("answer") or t.get("tests"), t["id"])
                    self.assertIsInstance(t["extra"], dict)
                    if name.startswith("sft-"):
                        self.assertNotIn("split", t)

    def test_splits_disjoint(self):
        eval_prompts = set()
        for fam in EVAL:
            by_split = {}
            for t in self.files[fam]:
                by_split.setdefault(t["split"], set()).add(t["prompt"])
            splits = list(by_split)
            for i, s in enumerate(splits):
                self.assertEqual(len(by_split[s]), SIZES[fam][s], f"{fam} {s}: repeated prompts")
                for u in splits[i + 1:]:
                    self.assertFalse(by_split[s] & by_split[u], f"{fam}: {s} and {u} share prompts")
                eval_prompts |= by_split[s]
        for fam in EVAL:
            sft = [t["prompt"] for t in self.files["sft-" + fam]]
            self.assertEqual(len(set(sft)), len(sft), f"sft-{fam}: repeated prompts")
            self.assertFalse(set(sft) & eval_prompts, f"sft-{fam} shares prompts with an evaluation file")
        # cls draws each split from the same split of its source families
        src = {}
        for fam in EVAL[:-1]:
            for t in self.files[fam]:
                src[t["prompt"]] = (fam, t["split"])
        for t in self.files["cls"]:
            if t["prompt"] in src:
                self.assertEqual(src[t["prompt"]], (t["extra"]["source_family"], t["split"]), t["id"])
            else:   # hard-family prompts for cls train come from a reserve used nowhere else
                self.assertEqual(t["split"], "train", t["id"])
                self.assertIn(t["extra"]["source_family"], ("math-hard", "code-hard", "reasoning-hard"))

    def test_math_answers(self):
        for name in ("math", "sft-math"):
            for t in self.files[name]:
                self.assertEqual(t["grader"], "math")
                self.assertEqual(t["extra"], {"answer_format": "number"})
                last = t["solution"].split("\n")[-1]
                at_once = t.get("style") == "second"   # the opening math-hard's answers share, read by "answer is"
                self.assertEqual(last, f"The final answer is {t['answer']}." if at_once else "#### " + t["answer"],
                                 t["id"])
                self.assertTrue(0 <= int(t["answer"]) <= 200, t["id"])
        for name in ("math-hard", "sft-math-hard"):
            for t in self.files[name]:
                self.assertEqual(t["extra"], {"answer_format": "boxed"})
                self.assertTrue(t["solution"].endswith("\\boxed{%s}" % t["answer"]), t["id"])
                self.assertEqual(last_boxed(t["solution"]), t["answer"], t["id"])

    def test_choice_answers(self):
        for name in ("reasoning", "sft-reasoning", "reasoning-hard", "sft-reasoning-hard"):
            for t in self.files[name]:
                ex = t["extra"]
                self.assertEqual(t["grader"], "choice")
                self.assertEqual(ex["labels"], ["A", "B", "C", "D"])
                self.assertEqual(len(set(ex["choices"])), 4, t["id"])
                want = t["question"] + "\nOptions:\n" + "".join(f"{l}. {c}\n" for l, c in zip(ex["labels"], ex["choices"]))
                self.assertEqual(t["prompt"], want, t["id"])
                right = ex["choices"][ex["labels"].index(t["answer"])]
                if t.get("style") == "second":      # the letter alone
                    self.assertEqual(t["solution"], f"So the answer is ({t['answer']}).", t["id"])
                else:                               # worked: ends naming the right choice by its text
                    self.assertTrue(t["solution"].endswith(f", so the answer is {right}."), t["id"])
                words = [c.lower().split() for c in ex["choices"]]   # the grader reads the text unambiguously
                for w in words:
                    self.assertEqual([v for v in words if v[:len(w)] == w], [w], t["id"])

    @unittest.skipUnless(os.access(T2, os.X_OK), f"{T2} not built")
    def test_graders_accept_references(self):
        """`t2 grade` (the grader plugins the daemon uses) marks every reference solution right, in both styles
        of the pools: the worked multiple-choice answers name the choice by its text, the others give a letter.
        (Code solutions run against their tests in test_code_solutions_pass_tests.)"""
        for name in ("math", "sft-math", "math-hard", "reasoning", "sft-reasoning", "reasoning-hard",
                     "sft-reasoning-hard", "cls"):
            tasks_path = os.path.join(self.tmp.name, f"grade-{name}.jsonl")
            outputs = os.path.join(self.tmp.name, f"grade-{name}.out")
            with open(tasks_path, "w") as f:
                f.writelines(json.dumps(t) + "\n" for t in self.files[name])
            with open(outputs, "w") as f:
                f.writelines(json.dumps({"id": t["id"], "output": t["solution"]}) + "\n" for t in self.files[name])
            r = subprocess.run([T2, "grade", "--task", tasks_path, "--outputs", outputs, "--json"],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, f"{name}: {r.stderr}")
            verdicts = json.loads(r.stdout)["verdicts"]
            self.assertEqual(len(verdicts), len(self.files[name]), name)
            wrong = [(v["id"], v["detail"]) for v in verdicts if not v["correct"]]
            self.assertEqual(wrong, [], name)

    def test_code_solutions_pass_tests(self):
        for name in ("code", "sft-code", "code-hard", "sft-code-hard"):
            hard = "hard" in name
            for t in self.files[name]:
                self.assertEqual(t["grader"], "code")
                code = fenced_code(t["solution"])
                self.assertIsNotNone(code, t["id"])
                self.assertIn(f"def {t['entry_point']}(", code)
                if hard:
                    self.assertEqual(t["prompt"], "Write a solution to the following problem:\n```python\n"
                                     + t["question"].strip() + "\n```")
                    self.assertEqual(t["extra"]["code_prefix"], t["question"])
                    self.assertTrue(t["tests"].startswith("def check(candidate):\n"))
                    self.assertTrue(t["tests"].endswith(f"check({t['entry_point']})\n"))
                else:
                    asserts = t["tests"].strip().split("\n")
                    self.assertEqual(len(asserts), 3, t["id"])
                    self.assertEqual(t["prompt"], t["question"] + " Your code should satisfy the following "
                                     "assertion:\n```python\n" + asserts[0] + "\n```")
                program = compile(t["extra"].get("code_prefix", "") + "\n" + code + "\n\n" + t["tests"], t["id"], "exec")
                if t.get("style") == "second":      # prints instead of returning: the tests fail
                    self.assertNotIn("return", code, t["id"])
                    with self.assertRaises(AssertionError, msg=t["id"]), contextlib.redirect_stdout(io.StringIO()):
                        exec(program, {"__name__": "t"})
                    continue
                exec(program, {"__name__": "t"})
                with self.assertRaises(AssertionError, msg=t["id"]):   # a wrong solution fails the tests
                    wrong = f"def {t['entry_point']}(*args):\n    return None\n"
                    exec(compile(wrong + "\n" + t["tests"], t["id"], "exec"), {"__name__": "t"})

    def test_second_style(self):
        """A third to two thirds of each pretraining pool answers in the second style, by kind: each kind of task
        (template) leans clearly to one style, and each family has kinds of both leanings (in math: the one-step
        kinds lean to working and the two-step kinds both ways; in math and reasoning the answer-leaning kinds take
        the steps a worked-leaning kind teaches); the evaluation splits carry neither a style nor a kind."""
        for fam in EVAL[:-1]:
            self.assertFalse([t["id"] for t in self.files[fam] if "style" in t or "kind" in t], fam)
            sft = self.files["sft-" + fam]
            second = [t for t in sft if t.get("style") == "second"]
            self.assertTrue(0.35 < len(second) / len(sft) < 0.65, f"sft-{fam}: {len(second)} of {len(sft)}")
            by_kind = collections.defaultdict(list)
            for t in sft:
                by_kind[t["kind"]].append(t.get("style") == "second")
            share = {kind: sum(styles) / len(styles) for kind, styles in by_kind.items()}
            lean = {kind: v > 0.5 for kind, v in share.items()}   # leans to the second style
            for kind, styles in by_kind.items():
                if len(styles) >= 30:
                    self.assertFalse(0.4 < share[kind] < 0.6,
                                     f"sft-{fam} kind {kind!r}: second style {share[kind]:.2f}")
            self.assertEqual({lean[k] for k, styles in by_kind.items() if len(styles) >= 30}, {True, False},
                             f"sft-{fam}: kinds of one leaning only")
            if fam == "math":   # one-step kinds lean to working; each answer-leaning kind has a worked-leaning twin
                # that takes the same steps (the same operations, the previous result in the same place) over the
                # same numbers (most sums, products, ... of its working are ones the twin's working states)
                shapes, told, facts = collections.defaultdict(collections.Counter), collections.defaultdict(set), \
                    collections.defaultdict(list)
                for t in sft:
                    prev, steps, stated = None, [], []
                    for line in t["solution"].split("\n")[1:-1]:
                        x, op, y, z = re.search(r"(\d+) ([-+*/]) (\d+) = (\d+)", line).groups()
                        steps.append((op, x == prev, y == prev))
                        stated.append((x, op, y, z))
                        prev = z
                    if steps:
                        shapes[t["kind"]][tuple(steps)] += 1
                        facts[t["kind"]] += stated
                        if not lean[t["kind"]]:
                            told[t["kind"]].update(stated)
                # a kind's shape is its most common one (a result that equals an earlier number changes a task's)
                shape = {kind: c.most_common(1)[0][0] for kind, c in shapes.items()}
                for kind in by_kind:
                    if len(shape[kind]) == 1:
                        self.assertFalse(lean[kind], f"math kind {kind!r} takes one step")
                    elif lean[kind]:
                        twins = [k for k in by_kind if not lean[k] and shape[k] == shape[kind]
                                 and sum(f in told[k] for f in facts[kind]) >= 0.85 * len(facts[kind])]
                        self.assertTrue(twins, f"math kind {kind!r}: no worked-leaning twin")
                self.assertEqual({lean[k] for k in by_kind if len(shape[k]) > 1}, {True, False})
            if fam == "reasoning":  # each answer-leaning kind that works in steps shares them with a worked-leaning
                # kind (the steps with their numbers blanked out)
                forms = collections.defaultdict(set)
                for t in sft:
                    forms[t["kind"]].update(re.sub(r"\d+", "#", line) for line in t["solution"].split("\n")[1:-1])
                stepped = [k for k in by_kind if lean[k] and forms[k]]
                self.assertTrue(stepped, "no answer-leaning reasoning kind works in steps")
                for kind in stepped:
                    self.assertTrue([k for k in by_kind if not lean[k] and forms[kind] <= forms[k]],
                                    f"reasoning kind {kind!r}: no worked-leaning kind takes the same steps")
            for t in sft:
                self.assertIn(t.get("style"), (None, "second"), t["id"])
                if t.get("style") == "second":
                    if t["grader"] != "code":   # the final line alone
                        self.assertNotIn("\n", t["solution"], t["id"])
                        self.assertNotIn("step by step", t["solution"], t["id"])
                elif t["grader"] != "code":
                    self.assertTrue(t["solution"].startswith("Let's think step by step.\n"), t["id"])

    def test_hard_reasoning_steps(self):
        """The answer-leaning reasoning-hard kinds that compare or count the calendar take the steps the reasoning
        pool's worked answers teach (numbers blanked out), only more of them: the comparison chain and its last
        line (rh_number, rh_sums), the day or month right after or before another (rh_ahead)."""
        def steps(t):
            return [re.sub(r"\d+", "#", ln.split(", so the answer is")[0].rstrip("."))
                    for ln in t["solution"].split("\n")[1:]]
        taught = {s for t in self.files["sft-reasoning"] if t.get("style") != "second" for s in steps(t)}
        seen = collections.Counter()
        for t in self.files["sft-reasoning-hard"]:
            if t["kind"] in ("rh_number", "rh_sums", "rh_ahead") and t.get("style") != "second":
                shared = [s for s in steps(t) if s.startswith(("Of ", "The "))]
                self.assertGreaterEqual(len(shared), 2, t["id"])
                self.assertLessEqual(set(shared), taught, t["id"])
                seen[t["kind"]] += 1
        self.assertEqual(len(seen), 3, seen)

    def test_kinds_of_evaluation_tasks(self):
        """generate() tells the kind of every evaluation task of families 1-6 (t2tiny.py kinds), which the files
        do not carry."""
        tasks = tasks_module()
        kind_of = {}
        files = tasks.generate(0, 0.1, kind_of=kind_of)
        ids = {t["id"] for fam in EVAL[:-1] for t in files[f"{fam}.jsonl"]}
        self.assertEqual(set(kind_of), ids)
        self.assertIn("rh_ahead", kind_of.values())

    def test_cls(self):
        for name in ("cls", "sft-cls"):
            seen = {}
            for t in self.files[name]:
                self.assertEqual(t["grader"], "label")
                self.assertEqual(t["answer"], t["label"])
                self.assertEqual(t["solution"], "Classification: \\boxed{%s}" % t["label"])
                fam = t["extra"]["source_family"]
                self.assertEqual(fam.split("-")[0], t["label"])
                seen[fam] = seen.get(fam, 0) + 1
            self.assertEqual(len(seen), 6, name)
            hard = sum(v for k, v in seen.items() if k.endswith("-hard"))
            self.assertEqual(hard, len(self.files[name]) // 10, name)

    def test_cls_system_matches_classify_c(self):
        tasks = tasks_module()
        self.assertEqual(tasks.classify_system(["math", "code", "reasoning"]), SYS_CLS)
        self.assertEqual(tasks.SYS_CLS, SYS_CLS)


if __name__ == "__main__":
    unittest.main()

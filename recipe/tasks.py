#!/usr/bin/env python3
"""Synthetic task families for the tiny-model recipe, in the formats of the real benchmarks.

Every family is written as a generic JSONL file (daemon/tasks/tasks.h, "Generic JSONL format") whose
prompts, system prompts and extra keys are the ones the benchmark loaders build, so the same graders apply:

  family          like          grader   answer             solution ends with
  math            GSM8K         math     number             "#### N"            (extra.answer_format "number")
  code            MBPP          code     - (tests)          a ```python fenced function
  reasoning       ARC-Easy      choice   letter A-D         "the answer is (X)."
  math-hard       MATH          math     number             "\\boxed{N}"          (extra.answer_format "boxed")
  code-hard       HumanEval     code     - (tests)          a ```python fenced function
  reasoning-hard  ARC-Challenge choice   letter A-D         "the answer is (X)."
  cls             routing       label    math/code/reasoning "Classification: \\boxed{label}"

Files: <family>.jsonl with a "split" on every line (train / validation / test; the hard families only
validation and test) and sft-<family>.jsonl without one, a larger pool for next-token pretraining whose
prompts appear in no <family>.jsonl. No prompt is used twice anywhere: one set of used prompts is shared by
families 1-6, so the splits and the SFT pools are disjoint. cls reuses prompts of families 1-6: its train /
validation / test lines come from the same split of their source family (the hard families, which have no
train split, give cls-train prompts from a reserve used nowhere else) and sft-cls from the SFT pools.

Usage: python3 recipe/tasks.py --out DIR [--seed 0] [--scale 1.0]
The output is byte-identical for the same seed and scale (one random.Random per family, seeded from
"<seed>:<family>"; JSON with sorted keys; ASCII only).
"""
import argparse
import json
import os
import random
import re
import sys

# ---------------- system prompts (daemon/tasks/loaders.c, plugins/common/classify.c) ----------------

SYS_GSM8K = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
             "request. Reason step by step, then give the final answer as a number on the last line in the form "
             "\"#### N\".")
SYS_MATH = "Solve the question below by reasoning step by step, and put the final answer within \\boxed{}."
SYS_ARC = ("The following are multiple choice questions (with answers). Think step by step and then finish your "
           "answer with \"the answer is (X)\" where X is the correct letter choice.")
SYS_CODE = ("You are an exceptionally intelligent coding assistant that consistently delivers accurate and "
            "reliable responses to user instructions.")
CLS_LABELS = ("math", "code", "reasoning")


def classify_system(labels):
    """The text t2_classify_system() (plugins/common/classify.c) builds for these labels."""
    return ("You route questions to specialists. Read the question the user gives you and decide which kind of "
            "specialist should answer it. The kinds are: " + "".join(l + ", " for l in labels) +
            "or others if none of them fits. Do not answer the question itself. Reply with one line: "
            "Classification: \\boxed{kind}")


SYS_CLS = classify_system(CLS_LABELS)
LETTERS = ("A", "B", "C", "D")
WORKED = "Let's think step by step.\n"    # how every reference solution of math and reasoning families opens
AT_ONCE = "The final answer is "          # how math and math-hard answers without working open

# The pretraining pools are not all written the way the graders want: like the mixed sources a real base model
# learns from, part of each pool answers in a second style. Math solutions give only the final answer and reasoning
# ones only the letter ("So the answer is (C)."), without working; code prints its result instead of returning it.
# Both math families answer at once the same way (AT_ONCE: "The final answer is 5." in GSM8K's, which its grader
# reads after "answer is", and "The final answer is \boxed{5}" in MATH's), so what the math expert learns against
# answering at once can carry over to the unseen variants: where the GSM8K answer alone was "#### 5", the math
# expert of bfd1b78's model (+12 on math) left math-hard's answers as they were (validation: greedy 2/50 with it,
# 3/50 without, 8/50 with the working forced).
# Which style a task gets depends on its kind (its template: sources differ by topic): some kinds of each family
# lean to the second style (SECOND_STYLE_LEAN of their tasks, chosen by the seed), the others to the graders'
# style (the rest). The base model learns both and follows each kind's leaning, so it leaves room to adapt: an
# expert can learn which style its task rewards (working, then the answer; return, not print) across every kind,
# as well as get better at the task itself. That needs kinds where the other style really pays:
# - math: the three kinds that take three steps lean to the answer alone and come up three times as often as the
#   others: two products added (m_two_prices), two small numbers taken from a product (m_earn_twice), three parts
#   put together and shared out (m_share_three). Each has a worked-leaning twin that takes the same three steps
#   over the same numbers (m_two_packs, m_give_twice, m_pack_three), so the model learns their working from the
#   twin, as reasoning's answer-leaning kinds learn theirs from r_number. The one- and two-step kinds lean to
#   working. How it came to this:
#   - five two-step kinds leaning to the answer, sharing only their first step with a worked-leaning kind: whether
#     the model learned the second depended on the run: the math expert gained 12 points on the model of bfd1b78's
#     recipe, 0.5 on be4b07e's, and on two trials of 884cf00's (test: 82.5% -> 86%; validation: 78.5% -> 80%);
#   - three two-step kinds with twins (m_change and m_pages, m_earn and m_pack_use, m_pool_share and m_bags): the
#     twins taught the working (validation, greedy / worked out / at once: m_change 11 / 13 / 11 of 17), but a
#     two-step kind answered at once most of the time is answered at once nearly as well as worked out, so the base
#     was too good (test 85.5%, 92% worked out) and its math expert took none of the room (test 85.5% -> 83%);
#   - three-step kinds need working a model of this size cannot do in its head (a trial's base: a*d - x - y 7/30
#     greedy, 19/30 worked out; 67% on test). Their room is taken by the math expert only when each reward is
#     measured against the task's own mean (recipe/t2tiny.py math_expert: the trial's expert 66.5% with the batch's
#     mean, 71.5% with the task's). The model of this recipe: base 69.5% on validation, 73% on test; its math
#     expert 81.5% on validation, 78.5% on test (math_expert records the trials of its settings).
# - reasoning: the comparisons are built of steps another kind teaches, as math's kinds share their arithmetic.
#   r_number (the largest or smallest of four numbers 1..9) leans to working: one comparison of two numbers at a
#   time (compare_chain). r_measured and r_age ask the same of four named values ("There is a 7 kg goat, ...
#   How much does the heaviest animal weigh?"), take the same steps and lean to the letter alone. Days, months,
#   sequences and categories lean to working.
#   How it came to this (200 validation questions each, worked out against answered at once): each kind had its
#   own one-line working over values up to 999, and the model learned none of them (t2-tiny of 8375c70, its
#   working copied the wrong values). With the chain, r_number was right 19/20 to 23/23 worked out, but where the
#   answer was the thing's name the model could not name it, whatever the working: "The bear weighs 7 kg" for
#   the goat (r_measured and r_age 9/40 worked, 11/40 at once); with a kind teaching the naming alone, 5/55 (the
#   t2-tiny of bfd1b78); with the facts written value first, so naming copies what follows the value, it wrote
#   a name the question does not hold ("the 7-meter wire" for the cable: 7/55 worked). Asked for the value, the
#   model of this recipe answers them 63/63 worked out, 19/63 at once, and its reasoning expert learns to work:
#   39% -> 62% on validation. Days leaned to the letter as well, but were no better worked out (3/19, against
#   7/19 at once), which an expert that learns to work loses.
# - reasoning-hard: the unseen variants take the reasoning pool's steps further, in forms it does not have: six
#   numbers to compare (rh_number), sums to compare (rh_sums: math's sum, then the chain), a sequence counting
#   down (rh_sequence), two or three days or months ahead (rh_ahead: r_day's step again). These lean to the letter
#   alone, so an expert that learned to work reasoning out has working to carry over; rh_chain (an order from
#   facts given out of order, whose working no pool teaches) and rh_neither lean to working. The variants before
#   (rh_chain twice, products compared by name, sequences of growing steps, up to 20 days ahead) were built of
#   steps no pool teaches: the model of be4b07e's recipe answered them near chance at once and worse worked out
#   (test: 60/200 at once, 21/200 worked), so its reasoning expert, whose habit of working carried over, lost
#   there (22% -> 12.5%).
# - code, math-hard, code-hard: every other kind.
# Measured on the t2-tiny of b570c96, whose math and reasoning leaned by step count (every two-step math kind and
# the comparison kinds to the answer alone), with 100 validation questions: a two-step kind seen mostly without
# working was no better worked out than answered at once (m_change 1/12 worked, 5/12 at once): the model had
# not learned its working; the comparison kinds were at chance either way; the only contrast was where working
# was the common style already (r_calendar 9/14 worked, 3/14 at once), so no expert could gain by working more.
# (With one share for every task the greedy choice is a near tie, decided by noise: one training run of t2-tiny
# printed in every code answer, 0% on code.) The evaluation splits carry the reference (worked, returning)
# solution.
# A quarter of an answer-leaning kind's tasks are worked out, to learn its working from (15% in math, whose twins
# teach it; so math's pool is 40% in the second style, the others about half): at 0.8 the model of the comparison
# chain's trial worked m_pages out right 4/12 (the model of 8375c70 18/18, from the same math pool); at 0.75,
# whether the model learned the working of math's answer-leaning kinds depended on the run (learned by the model
# of bfd1b78's recipe, not by that of be4b07e's: see the math templates); the twins teach it.
SECOND_STYLE_LEAN = 0.75
SECOND_STYLE_KINDS = {     # family: (the kinds that lean to the second style, their share of it)
    "math": (("m_earn_twice", "m_share_three", "m_two_prices"), 0.85),
    "reasoning": (("r_age", "r_measured"), SECOND_STYLE_LEAN),
    "reasoning-hard": (("rh_ahead", "rh_number", "rh_sequence", "rh_sums"), SECOND_STYLE_LEAN),
}

# ---------------- a small world ----------------

NAMES = ["Ann", "Ben", "Cara", "Dan", "Eva", "Finn", "Gina", "Hugo", "Ivy", "Jack", "Kate", "Leo", "Mia", "Nick",
         "Olga", "Paul", "Rosa", "Sam", "Tina", "Umar", "Vera", "Will", "Yara", "Zack", "Lily", "Omar", "Nora",
         "Tom", "Sara", "Max"]
OBJECTS = [("pen", "pens"), ("apple", "apples"), ("marble", "marbles"), ("sticker", "stickers"),
           ("cookie", "cookies"), ("card", "cards"), ("ball", "balls"), ("pencil", "pencils"),
           ("shell", "shells"), ("stamp", "stamps"), ("egg", "eggs"), ("candy", "candies"),
           ("button", "buttons"), ("bead", "beads"), ("flower", "flowers"), ("coin", "coins"),
           ("grape", "grapes"), ("toy car", "toy cars"), ("book", "books"), ("orange", "oranges")]
CONTAINERS = [("box", "boxes"), ("bag", "bags"), ("pack", "packs"), ("basket", "baskets"), ("crate", "crates"),
              ("jar", "jars"), ("tray", "trays")]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
CATEGORIES = {
    "fruit": ["apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear", "plum", "melon", "kiwi"],
    "tool": ["hammer", "saw", "wrench", "drill", "shovel", "screwdriver", "rake", "chisel", "pliers"],
    "colour": ["red", "blue", "green", "yellow", "purple", "pink", "brown", "black", "white", "grey"],
    "animal": ["dog", "cat", "horse", "cow", "sheep", "lion", "tiger", "rabbit", "mouse", "goat", "bear", "wolf"],
    "vehicle": ["car", "bus", "truck", "bicycle", "train", "boat", "plane", "tractor", "scooter"],
    "instrument": ["piano", "guitar", "violin", "drum", "flute", "trumpet", "harp"],
}
WEIGHED = ["dog", "cat", "horse", "cow", "sheep", "goat", "pig", "rabbit", "fox", "deer", "bear", "wolf"]
ROPES = ["rope", "ribbon", "string", "cable", "wire", "belt", "scarf", "hose"]
# (adjective, opposite, superlative, opposite superlative)
RELATIONS = [("taller", "shorter", "tallest", "shortest"), ("older", "younger", "oldest", "youngest"),
             ("heavier", "lighter", "heaviest", "lightest"), ("faster", "slower", "fastest", "slowest")]
WORDS = ["cat", "house", "python", "apple", "river", "green", "table", "music", "light", "stone", "paper",
         "cloud", "garden", "window", "yellow", "bottle", "rabbit", "summer", "planet", "forest", "code", "sun"]


def an(word):
    return ("an " if word[0] in "aeiou8" else "a ") + word     # "an 8 kg goat"


def two_names(r):
    a, b = r.sample(NAMES, 2)
    return a, b


def scene(r):
    """Two people, an object (singular, plural) and a container (singular, plural) for a word problem."""
    return (*two_names(r), *r.choice(OBJECTS), *r.choice(CONTAINERS))


def distinct_ints(r, n, lo, hi):
    return r.sample(range(lo, hi + 1), n)


# ---------------- 1. math (GSM8K format) ----------------
# Each template returns (question, reasoning lines, answer); the answer is an integer in 0..200. Each step of a
# worked answer is one small fact: addends and subtrahends 1..7, factors 2..6. The tables decide how hard the
# family is for t2-tiny (hidden 192, 4 layers, 30 minutes of pretraining; 100 validation questions): with
# addends 1..5 and factors 2..5 it answered 87% right, the two-step kinds at once as well as worked out (their
# answers are few enough to remember); with addends 1..9 it no longer learned the sums themselves (m_add 2 of 5,
# m_sub 0 of 4), 48% in all; with 1..7, 63%: one-step kinds 35 of 37, two-step kinds 27 of 63 answered at
# once and 23 of 63 with the working forced, when every two-step kind leaned to the answer alone. With five of
# them leaning so (SECOND_STYLE_KINDS), 77.5% of 200, and working helps on the kinds answered at once (m_pages
# 3 of 18 at once, 18 of 18 worked). That depends on the run: the model of bfd1b78's recipe gained from working
# (its math expert: 76% -> 84.5%), the one of the recipe that asks named comparisons for their value learned the
# working of none of them (m_change 4/16 worked, 8/16 at once; m_pool_share 3/13 and 6/13; m_pages 5/18 and 4/18),
# so its math expert gains nothing (71% -> 71.5%). math-hard keeps to small numbers but takes three steps in new
# forms.

def m_pack(r):
    n, m, s, o, c, cs = scene(r)
    a, b = r.randint(2, 6), r.randint(2, 6)
    verb = r.choice(["buys", "gets", "has", "brings"])
    q = f"{n} {verb} {a} {cs} of {o}. Each {c} holds {b} {o}. How many {o} does {n} have in total?"
    return q, [f"There are {a} {cs} with {b} {o} each, so {a} * {b} = {a * b}."], a * b


def m_add(r):
    n, m, s, o, c, cs = scene(r)
    a, b = r.randint(1, 7), r.randint(1, 7)
    q = r.choice([f"{n} has {a} {o}. {m} gives {n} {b} more {o}. How many {o} does {n} have now?",
                  f"{n} collects {a} {o} in the morning and {b} {o} in the afternoon. How many {o} does {n} "
                  f"collect in all?"])
    return q, [f"{n} has {a} + {b} = {a + b} {o}."], a + b


def m_sub(r):
    n, m, s, o, c, cs = scene(r)
    b = r.randint(1, 7)
    a = b + r.randint(1, 7)
    q = r.choice([f"{n} has {a} {o} and gives {b} of them to {m}. How many {o} does {n} have left?",
                  f"{n} had {a} {o} but lost {b} of them. How many {o} does {n} have now?",
                  f"There were {a} {o} in a box. {n} took {b} {o} out. How many {o} are still in the box?"])
    return q, [f"{a} - {b} = {a - b}, so {a - b} {o} are left."], a - b


def m_share(r):
    n, m, s, o, c, cs = scene(r)
    k, each = r.randint(2, 6), r.randint(1, 7)
    a = k * each
    if r.random() < 0.5:
        q = f"{n} shares {a} {o} equally among {k} friends. How many {o} does each friend get?"
        return q, [f"Each friend gets {a} / {k} = {each} {o}."], each
    q = f"{n} puts {a} {o} into groups of {k}. How many groups does {n} make?"
    return q, [f"{a} / {k} = {each}, so there are {each} groups."], each


def m_price(r):
    n, m, s, o, c, cs = scene(r)
    p = r.randint(2, 6)
    a = r.randint(2, 6)
    q = f"One {s} costs {p} dollars. {n} buys {a} {o}. How many dollars does {n} pay?"
    return q, [f"{a} {o} cost {a} * {p} = {a * p} dollars."], a * p


def m_add_sub(r):
    n, m, s, o, c, cs = scene(r)
    a, b = r.randint(1, 7), r.randint(1, 7)
    c = r.randint(1, min(a + b - 1, 7))
    q = f"{n} has {a} {o}. {n} buys {b} more and then gives {c} to {m}. How many {o} does {n} have now?"
    return q, [f"After buying, {n} has {a} + {b} = {a + b} {o}.",
               f"After giving some away, {a + b} - {c} = {a + b - c}."], a + b - c


def m_pack_use(r):
    n, m, s, o, c, cs = scene(r)
    a, b = r.randint(2, 6), r.randint(2, 6)
    d = r.randint(1, min(a * b - 1, 7))
    verb = r.choice(["uses", "eats", "gives away", "sells"])
    q = f"{n} buys {a} {cs} of {o} with {b} {o} in each {c}. Then {n} {verb} {d} of them. How many {o} are left?"
    return q, [f"{n} buys {a} * {b} = {a * b} {o}.", f"{a * b} - {d} = {a * b - d} are left."], a * b - d


def m_change(r):
    n, m, s, o, c, cs = scene(r)
    p, a = r.randint(2, 6), r.randint(2, 6)
    money = a * p + r.randint(1, 7)
    q = f"{n} has {money} dollars and buys {a} {o} that cost {p} dollars each. How many dollars does {n} have left?"
    return q, [f"The {o} cost {a} * {p} = {a * p} dollars.",
               f"{money} - {a * p} = {money - a * p} dollars are left."], money - a * p


def shared_out(r, question, each_of):
    """Two people's things put together and shared out equally: the steps of m_pool_share and of its twin m_bags.
    question and each_of (who gets a share) are formats over n, m, o, c, cs, a, b, k."""
    n, m, s, o, c, cs = scene(r)
    k, each = r.randint(2, 6), r.randint(2, 6)
    total = k * each
    a = r.randint(1, total - 1)
    names = {"n": n, "m": m, "o": o, "c": c, "cs": cs, "a": a, "b": total - a, "k": k}
    return question.format(**names), [f"Together they have {a} + {total - a} = {total} {o}.",
                                      f"Each {each_of.format(**names)} gets {total} / {k} = {each}."], each


def m_pool_share(r):
    return shared_out(r, "{n} has {a} {o} and {m} has {b} {o}. They put them together and share them equally among "
                         "{k} children. How many {o} does each child get?", "child")


def m_bags(r):
    return shared_out(r, "{n} picks {a} {o} and {m} picks {b} {o}. They pack all of them into {k} {cs} with the same "
                         "number in each. How many {o} go into each {c}?", "{c}")


def m_times(r):
    n, m, s, o, c, cs = scene(r)
    k = r.randint(2, 3)
    a = r.randint(2, 6)
    q = f"{n} has {a} {o}. {m} has {k} times as many {o} as {n}. How many {o} do they have together?"
    return q, [f"{m} has {k} * {a} = {k * a} {o}.", f"Together they have {a} + {k * a} = {a + k * a}."], a + k * a


def m_earn(r):
    n, m, s, o, c, cs = scene(r)
    a, d = r.randint(2, 6), r.randint(2, 6)
    c = r.randint(1, min(a * d - 1, 7))
    q = f"{n} earns {a} dollars each day for {d} days and then spends {c} dollars. How many dollars does {n} have left?"
    return q, [f"{n} earns {a} * {d} = {a * d} dollars.", f"{a * d} - {c} = {a * d - c} dollars are left."], a * d - c


def m_pages(r):
    n, m, s, o, c, cs = scene(r)
    a, d = r.randint(2, 6), r.randint(2, 6)
    t = a * d + r.randint(1, 7)
    q = f"A book has {t} pages. {n} reads {a} pages a day for {d} days. How many pages are left to read?"
    return q, [f"{n} reads {a} * {d} = {a * d} pages.", f"{t} - {a * d} = {t - a * d} pages are left."], t - a * d


def m_three_days(r):
    n, m, s, o, c, cs = scene(r)
    a, b, d = r.randint(1, 7), r.randint(1, 7), r.randint(1, 7)
    verb = r.choice(["picks", "finds", "makes", "collects"])
    q = f"{n} {verb} {a} {o} on Monday, {b} on Tuesday and {d} on Wednesday. How many {o} is that in total?"
    return q, [f"Monday and Tuesday give {a} + {b} = {a + b}.", f"Adding Wednesday, {a + b} + {d} = {a + b + d}."], \
        a + b + d


def worded(question, lines, **names):
    """A word problem's (question, working lines, answer): question and lines (one a step) are formats over names,
    whose "t" is the answer."""
    return question.format(**names), [line.format(**names) for line in lines], names["t"]


def bought_twice(r, question, lines):
    """Two products added: the steps of m_two_prices and of its twin m_two_packs (see worded)."""
    n, m, s, o, c, cs = scene(r)
    a, b, c2, d = (r.randint(2, 6) for _ in range(4))
    return worded(question, lines, n=n, m=m, o=o, c=c, cs=cs, a=a, b=b, c2=c2, d=d, p=a * b, q=c2 * d,
                  t=a * b + c2 * d)


def m_two_prices(r):
    return bought_twice(r, "{n} buys {a} {o} at {b} dollars each and {c2} {cs} at {d} dollars each. How many "
                           "dollars does {n} pay?",
                        ["The {o} cost {a} * {b} = {p} dollars.", "The {cs} cost {c2} * {d} = {q} dollars.",
                         "In all, {p} + {q} = {t} dollars."])


def m_two_packs(r):
    return bought_twice(r, "{n} has {a} {cs} with {b} {o} in each, and {m} has {c2} {cs} with {d} {o} in each. "
                           "How many {o} do they have together?",
                        ["{n} has {a} * {b} = {p} {o}.", "{m} has {c2} * {d} = {q} {o}.",
                         "Together they have {p} + {q} = {t} {o}."])


def taken_twice(r, question, lines):
    """A product, then two small numbers taken from it: the steps of m_earn_twice and of its twin m_give_twice."""
    n, m, s, o, c, cs = scene(r)
    a, d = r.randint(2, 6), r.randint(2, 6)
    x = r.randint(1, min(a * d - 2, 7))
    y = r.randint(1, min(a * d - x - 1, 7))
    return worded(question, lines, n=n, m=m, o=o, c=c, cs=cs, a=a, d=d, x=x, y=y, p=a * d, q=a * d - x,
                  t=a * d - x - y)


def m_earn_twice(r):
    return taken_twice(r, "{n} earns {a} dollars each day for {d} days. Then {n} spends {x} dollars on lunch and "
                          "{y} dollars on a ticket. How many dollars does {n} have left?",
                       ["{n} earns {a} * {d} = {p} dollars.", "After lunch, {p} - {x} = {q} dollars.",
                        "After the ticket, {q} - {y} = {t} dollars are left."])


def m_give_twice(r):
    return taken_twice(r, "{n} buys {a} {cs} of {o} with {d} {o} in each {c}. {n} gives {x} {o} to {m} and {y} "
                          "to a friend. How many {o} does {n} have left?",
                       ["{n} buys {a} * {d} = {p} {o}.", "After giving {m} some, {p} - {x} = {q}.",
                        "After giving the friend some, {q} - {y} = {t} {o} are left."])


def shared_three(r, question, each_of):
    """Three people's things put together and shared out equally: the steps of m_share_three and of its twin
    m_pack_three (each_of: who gets a share; see worded)."""
    n, m, s, o, c, cs = scene(r)
    p = r.choice([x for x in NAMES if x not in (n, m)])
    while True:
        a, b, d = r.randint(1, 7), r.randint(1, 7), r.randint(1, 7)
        ks = [k for k in range(2, 7) if (a + b + d) % k == 0]
        if ks:
            break
    k = r.choice(ks)
    return worded(question, ["{n} and {m} have {a} + {b} = {ab} {o}.", "With {p}'s, {ab} + {d} = {total} {o}.",
                             "Each " + each_of + " gets {total} / {k} = {t}."],
                  n=n, m=m, p=p, o=o, c=c, cs=cs, a=a, b=b, d=d, k=k, ab=a + b, total=a + b + d, t=(a + b + d) // k)


def m_share_three(r):
    return shared_three(r, "{n} has {a} {o}, {m} has {b} {o} and {p} has {d} {o}. They put them together and share "
                           "them equally among {k} children. How many {o} does each child get?", "child")


def m_pack_three(r):
    return shared_three(r, "{n} picks {a} {o}, {m} picks {b} {o} and {p} picks {d} {o}. They pack all of them into "
                           "{k} {cs} with the same number in each. How many {o} go into each {c}?", "{c}")


# The answer-leaning kinds (SECOND_STYLE_KINDS) take three steps and come up three times as often as the others;
# each has a worked-leaning twin that takes the same three steps over the same numbers: m_two_prices and
# m_two_packs, m_earn_twice and m_give_twice, m_share_three and m_pack_three.
MATH_TEMPLATES = [m_pack, m_add, m_sub, m_share, m_price, m_add_sub, m_pack_use, m_earn, m_pages, m_change, m_bags,
                  m_pool_share, m_times, m_three_days, m_two_packs, m_give_twice, m_pack_three] + \
    3 * [m_two_prices, m_earn_twice, m_share_three]


def gen_math(r):
    tpl = r.choice(MATH_TEMPLATES)
    q, steps, ans = tpl(r)
    assert 0 <= ans <= 200
    return {"kind": tpl.__name__, "system": SYS_GSM8K, "prompt": q, "answer": str(ans), "grader": "math",
            "label": "math",
            "extra": {"answer_format": "number"}, "solution": WORKED + "\n".join(steps) + f"\n#### {ans}"}


# ---------------- 4. math-hard (MATH format) ----------------

def h_expr(r):
    a, b, c, d = r.randint(1, 5), r.randint(1, 5), r.randint(2, 3), r.randint(1, 7)
    form = r.randrange(4)
    if form == 0:   # (a + b) * c - d
        s, t = a + b, (a + b) * c
        d = min(d, t)
        return (f"Compute $({a} + {b}) \\times {c} - {d}$.",
                [f"First, {a} + {b} = {s}.", f"Then {s} \\times {c} = {t}.", f"Finally, {t} - {d} = {t - d}."], t - d)
    if form == 1:   # a * (b + c) - d
        s, t = b + c, a * (b + c)
        d = min(d, t)
        return (f"Compute ${a} \\times ({b} + {c}) - {d}$.",
                [f"First, {b} + {c} = {s}.", f"Then {a} \\times {s} = {t}.", f"Finally, {t} - {d} = {t - d}."], t - d)
    if form == 2:   # (a - b) * (c + d)
        a, d = a + 4, d % 3 + 1
        s, u = a - b, c + d
        return (f"Compute $({a} - {b}) \\times ({c} + {d})$.",
                [f"First, {a} - {b} = {s}.", f"Next, {c} + {d} = {u}.", f"Then {s} \\times {u} = {s * u}."], s * u)
    c, d = r.randint(2, 5), r.randint(2, 5)
    p, q = a * c, b * d     # a * c - b * d, the larger product first
    if p < q:
        a, c, b, d, p, q = b, d, a, c, q, p
    return (f"Compute ${a} \\times {c} - {b} \\times {d}$.",
            [f"First, {a} \\times {c} = {p}.", f"Next, {b} \\times {d} = {q}.", f"Then {p} - {q} = {p - q}."], p - q)


def h_linear(r):
    x, a, b = r.randint(1, 7), r.randint(2, 5), r.randint(1, 7)
    if r.random() < 0.5:
        c = a * x + b
        return (f"Solve for $x$: ${a}x + {b} = {c}$.",
                [f"Subtract {b} from both sides: {a}x = {c - b}.", f"Divide both sides by {a}: x = {x}."], x)
    c = a * (x + b)
    return (f"Solve for $x$: ${a}(x + {b}) = {c}$.",
            [f"Divide both sides by {a}: x + {b} = {x + b}.", f"Subtract {b}: x = {x}."], x)


def h_half(r):
    n, m = two_names(r)
    c, cs = r.choice(CONTAINERS)
    _, o = r.choice(OBJECTS)
    b, k = r.randint(2, 5), r.randint(2, 5)
    a = r.randint(1, 20)
    if (a + b * k) % 2:
        a += 1
    tot = a + b * k
    q = (f"{n} has {a} {o}. {n} buys {b} {cs} with {k} {o} in each {c}, then gives half of all the {o} to {m}. "
         f"How many {o} does {n} keep?")
    return q, [f"The {cs} hold {b} \\times {k} = {b * k} {o}.", f"In all {n} has {a} + {b * k} = {tot}.",
               f"Half of {tot} is {tot // 2}."], tot // 2


def h_remainder(r):
    a, b, c, d = r.randint(2, 5), r.randint(2, 5), r.randint(1, 7), r.randint(3, 6)
    t = a * b + c
    q, rem = divmod(t, d)
    return (f"What is the remainder when ${a} \\times {b} + {c}$ is divided by ${d}$?",
            [f"First, {a} \\times {b} = {a * b}.", f"Then {a * b} + {c} = {t}.",
             f"Since {t} = {d} \\times {q} + {rem}, the remainder is {rem}."], rem)


def h_series(r):
    a = r.randint(1, 7)
    b = a + r.randint(2, 4)
    n = b - a + 1
    s = n * (a + b) // 2
    return (f"What is the sum of all integers from ${a}$ to ${b}$?",
            [f"There are {b} - {a} + 1 = {n} integers.",
             f"The sum is {n} \\times ({a} + {b}) / 2 = {n} \\times {a + b} / 2 = {s}."], s)


def h_mean(r):
    m = r.randint(3, 9)
    three = [r.randint(1, 2 * m) for _ in range(3)]
    fourth = 4 * m - sum(three)
    if fourth < 0:
        three = [x // 2 for x in three]
        fourth = 4 * m - sum(three)
    a, b, c = three
    return (f"The mean of four numbers is ${m}$. Three of them are ${a}$, ${b}$ and ${c}$. What is the fourth number?",
            [f"The four numbers add up to 4 \\times {m} = {4 * m}.", f"The three known ones add up to "
             f"{a} + {b} + {c} = {a + b + c}.", f"The fourth is {4 * m} - {a + b + c} = {fourth}."], fourth)


MATH_HARD_TEMPLATES = [h_expr, h_expr, h_linear, h_half, h_remainder, h_series, h_mean]


def gen_math_hard(r):
    tpl = r.choice(MATH_HARD_TEMPLATES)
    q, steps, ans = tpl(r)
    assert ans >= 0
    return {"kind": tpl.__name__, "system": SYS_MATH, "prompt": q, "answer": str(ans), "grader": "math",
            "label": "math",
            "extra": {"answer_format": "boxed"},
            "solution": WORKED + "\n".join(steps) + f"\n{AT_ONCE}\\boxed{{{ans}}}"}


# ---------------- 2. code (MBPP format) and 5. code-hard (HumanEval format) ----------------
# A template returns (description, function name, reference code, argument tuples); the expected values of
# the tests are computed by running the reference code, so tests and solution always agree.

def int_args(r, n=4, lo=0, hi=99):
    return [(x,) for x in distinct_ints(r, n, lo, hi)]


def list_args(r, n=4, lo=0, hi=50, size=(3, 6)):
    return [([r.randint(lo, hi) for _ in range(r.randint(*size))],) for _ in range(n)]


def word_args(r, n=4):
    return [(w,) for w in r.sample(WORDS, n)]


def c_arith(r):
    k = r.randint(2, 20)
    op, verb, prep, names = r.choice([("+", "add", "to", ["add_{k}", "plus_{k}"]),
                                      ("-", "subtract", "from", ["sub_{k}", "minus_{k}"]),
                                      ("*", "multiply", "by", ["mul_{k}", "times_{k}"])])
    fn = r.choice(names).format(k=k)
    text = f"Write a function to {verb} {k} {prep} a given number." if op != "*" else \
        f"Write a function to multiply a given number by {k}."
    return text, fn, f"def {fn}(x):\n    return x {op} {k}", int_args(r)


# one-line functions without a constant: (description, names, parameters, body, kind of arguments)
SIMPLE = [
    ("find the largest number in a list", "max_of_list largest find_max", "nums", "max(nums)", "list"),
    ("find the smallest number in a list", "min_of_list smallest find_min", "nums", "min(nums)", "list"),
    ("find the sum of a list of numbers", "sum_list list_sum total", "nums", "sum(nums)", "list"),
    ("reverse a string", "reverse_string reverse rev_str", "s", "s[::-1]", "word"),
    ("check whether a number is even", "is_even even check_even", "x", "x % 2 == 0", "int"),
    ("get the first element of a list", "first first_element head", "items", "items[0]", "list"),
    ("get the last element of a list", "last last_element tail", "items", "items[-1]", "list"),
    ("find the length of a string", "string_length str_len length", "s", "len(s)", "word"),
    ("convert a string to upper case", "to_upper upper shout", "s", "s.upper()", "word"),
    ("find the square of a number", "square sq square_num", "x", "x * x", "int"),
    ("find the absolute difference of two numbers", "abs_diff distance diff", "a, b", "abs(a - b)", "pair"),
]


def c_simple(r):
    text, names, params, body, kind = r.choice(SIMPLE)
    fn = r.choice(names.split())
    args = {"list": lambda: list_args(r), "word": lambda: word_args(r), "int": lambda: int_args(r, hi=30),
            "pair": lambda: [(r.randint(0, 99), r.randint(0, 99)) for _ in range(4)]}[kind]()
    return f"Write a function to {text}.", fn, f"def {fn}({params}):\n    return {body}", args


def c_const(r):
    """One-line functions with a constant."""
    kind = r.randrange(5)
    k = r.randint(2, 9)
    if kind == 0:
        fn = r.choice(["is_divisible_by_{k}", "div_by_{k}", "multiple_of_{k}"]).format(k=k)
        return f"Write a function to check whether a number is divisible by {k}.", fn, \
            f"def {fn}(x):\n    return x % {k} == 0", [(k * r.randint(1, 12),), (k * r.randint(1, 12) + 1,),
                                                      (r.randint(1, 99),), (k * r.randint(13, 20),)]
    if kind == 1:
        fn = r.choice(["count_{k}", "count_item", "how_many_{k}"]).format(k=k)
        args = []
        for _ in range(4):
            xs = [r.randint(0, 9) for _ in range(r.randint(3, 7))]
            args.append((xs,))
        return f"Write a function to count how many times {k} appears in a list.", fn, \
            f"def {fn}(nums):\n    return nums.count({k})", args
    if kind == 2:
        k = r.randint(2, 4)
        fn = r.choice(["repeat_{k}", "repeat_string", "times_{k}_str"]).format(k=k)
        return f"Write a function to repeat a string {k} times.", fn, f"def {fn}(s):\n    return s * {k}", \
            word_args(r)
    if kind == 3:
        fn = r.choice(["scale_list", "multiply_all", "times_{k}_list"]).format(k=k)
        return f"Write a function to multiply every number in a list by {k}.", fn, \
            f"def {fn}(nums):\n    return [x * {k} for x in nums]", list_args(r, hi=20)
    fn = r.choice(["contains_{k}", "has_{k}", "find_{k}"]).format(k=k)
    return f"Write a function to check whether {k} is in a list.", fn, \
        f"def {fn}(nums):\n    return {k} in nums", list_args(r, hi=12)


# two operations, each with its own constant, under a name that does not spell the rule out
TWO_STEP = [
    ("multiply a given number by {a} and then add {b}", "x", "x * {a} + {b}", "int"),
    ("add {a} to a given number and then multiply the result by {b}", "x", "(x + {a}) * {b}", "int"),
    ("keep the numbers of a list that are greater than {b} and add {a} to each of them", "nums",
     "[x + {a} for x in nums if x > {b}]", "list"),
    ("find the sum of a list after multiplying every number by {a}", "nums", "sum(x * {a} for x in nums)", "list"),
    ("find the length of a string plus {a}", "s", "len(s) + {a}", "word"),
    ("count the numbers of a list that are greater than {b}", "nums", "len([x for x in nums if x > {b}])", "list"),
]


def c_two(r):
    text, params, body, kind = r.choice(TWO_STEP)
    a, b = r.randint(2, 9), r.randint(2, 9)
    fn = r.choice(["transform", "compute", "apply_rule", "calc", "process", "convert"])
    args = {"list": lambda: list_args(r, hi=12), "word": lambda: word_args(r), "int": lambda: int_args(r, hi=30)}[kind]()
    return f"Write a function to {text.format(a=a, b=b)}.", fn, \
        f"def {fn}({params}):\n    return {body.format(a=a, b=b)}", args


def x_loop(r):
    """HumanEval-like: a loop with a condition, or two operations."""
    kind = r.randrange(12)
    k = r.randint(2, 9)
    if kind == 0:
        fn = r.choice(["sum_even_above", "even_sum_over", "big_even_total"])
        return (f"Return the sum of the even numbers in nums that are greater than {k}.", fn, "nums",
                f"def {fn}(nums):\n    total = 0\n    for x in nums:\n        if x % 2 == 0 and x > {k}:\n"
                f"            total += x\n    return total", list_args(r, size=(4, 8), hi=20))
    if kind == 1:
        fn = r.choice(["count_greater", "how_many_above", "count_over"])
        return (f"Return how many numbers in nums are greater than {k}.", fn, "nums",
                f"def {fn}(nums):\n    count = 0\n    for x in nums:\n        if x > {k}:\n            count += 1\n"
                f"    return count", list_args(r, size=(4, 8), hi=15))
    if kind == 2:
        b = r.randint(1, 7)
        fn = r.choice(["scale_shift", "transform", "map_linear"])
        return (f"Return a new list where every number x of nums becomes x * {k} + {b}.", fn, "nums",
                f"def {fn}(nums):\n    return [x * {k} + {b} for x in nums]", list_args(r, hi=20))
    if kind == 3:
        fn = r.choice(["count_vowels", "vowel_count", "num_vowels"])
        return ("Return the number of vowels (a, e, i, o, u) in the lowercase string s.", fn, "s",
                f"def {fn}(s):\n    count = 0\n    for ch in s:\n        if ch in 'aeiou':\n            count += 1\n"
                f"    return count", word_args(r))
    if kind == 4:
        fn = r.choice(["span", "value_range", "max_minus_min"])
        return ("Return the largest number in nums minus the smallest one.", fn, "nums",
                f"def {fn}(nums):\n    return max(nums) - min(nums)", list_args(r))
    if kind == 5:
        word = r.choice(["fizz", "buzz", "bang", "ping"])
        fn = r.choice(["fizz_word", "label_number", "say"])
        args = [(k * r.randint(1, 10),), (k * r.randint(1, 10) + 1,), (r.randint(1, 60),), (k,)]
        return (f"Return the string '{word}' if n is divisible by {k}, otherwise n as a string.", fn, "n",
                f"def {fn}(n):\n    if n % {k} == 0:\n        return '{word}'\n    return str(n)", args)
    if kind == 6:
        fn = r.choice(["digit_sum", "sum_digits", "add_digits"])
        return ("Return the sum of the decimal digits of the non-negative integer n.", fn, "n",
                f"def {fn}(n):\n    total = 0\n    while n > 0:\n        total += n % 10\n        n //= 10\n"
                f"    return total", int_args(r, lo=0, hi=9999))
    if kind == 7:
        fn = r.choice(["sum_squares", "square_total", "squares_up_to"])
        return ("Return the sum of i * i for every integer i from 1 to n.", fn, "n",
                f"def {fn}(n):\n    total = 0\n    for i in range(1, n + 1):\n        total += i * i\n"
                f"    return total", int_args(r, lo=0, hi=12))
    if kind == 8:
        k = r.randint(3, 5)
        fn = r.choice(["long_words", "words_longer", "filter_long"])
        args = [(r.sample(WORDS, r.randint(3, 5)),) for _ in range(4)]
        return (f"Return the words of the list words that have more than {k} letters, in their order.", fn, "words",
                f"def {fn}(words):\n    return [w for w in words if len(w) > {k}]", args)
    if kind == 9:
        lo, hi = r.randint(0, 10), r.randint(20, 40)
        fn = r.choice(["clip", "clamp_all", "bound"])
        return (f"Return a new list where every number of nums is limited to the range {lo} to {hi}: smaller "
                f"numbers become {lo} and larger ones become {hi}.", fn, "nums",
                f"def {fn}(nums):\n    return [min(max(x, {lo}), {hi}) for x in nums]", list_args(r, hi=50))
    if kind == 10:
        fn = r.choice(["alternating_sum", "alt_sum", "plus_minus"])
        return ("Return nums[0] - nums[1] + nums[2] - nums[3] + ... for the list nums.", fn, "nums",
                f"def {fn}(nums):\n    total = 0\n    for i, x in enumerate(nums):\n        if i % 2 == 0:\n"
                f"            total += x\n        else:\n            total -= x\n    return total", list_args(r, hi=20))
    fn = r.choice(["count_multiples", "multiples_up_to", "how_many_multiples"])
    return (f"Return how many integers from 1 to n are divisible by {k}.", fn, "n",
            f"def {fn}(n):\n    count = 0\n    for i in range(1, n + 1):\n        if i % {k} == 0:\n"
            f"            count += 1\n    return count", int_args(r, lo=1, hi=60))


def run_reference(code, fn, args):
    env = {}
    exec(compile(code, "<reference>", "exec"), env)
    return [env[fn](*[json.loads(json.dumps(a)) for a in arg]) for arg in args]   # copies: no aliasing


def call_text(fn, arg):
    return f"{fn}({', '.join(repr(a) for a in arg)})"


def gen_code(r):
    text, fn, code, args = r.choice([c_arith, c_simple, c_const, c_two, c_two])(r)
    args = args[:3]
    outs = run_reference(code, fn, args)
    asserts = [f"assert {call_text(fn, a)} == {o!r}" for a, o in zip(args, outs)]
    prompt = f"{text} Your code should satisfy the following assertion:\n```python\n{asserts[0]}\n```"
    return {"kind": re.sub(r"\d+", "#", text), "system": SYS_CODE, "prompt": prompt, "question": text,
            "grader": "code", "label": "code",
            "tests": "\n".join(asserts) + "\n", "entry_point": fn, "extra": {},
            "solution": f"```python\n{code}\n```"}


def gen_code_hard(r):
    doc, fn, params, code, args = x_loop(r)
    outs = run_reference(code, fn, args)
    head = (f"def {fn}({params}):\n    \"\"\"{doc}\n    >>> {call_text(fn, args[0])}\n    {outs[0]!r}\n    \"\"\"\n")
    check = "def check(candidate):\n" + "".join(f"    assert {call_text('candidate', a)} == {o!r}\n"
                                                for a, o in zip(args, outs)) + f"\n\ncheck({fn})\n"
    prompt = f"Write a solution to the following problem:\n```python\n{head.strip()}\n```"
    return {"kind": re.sub(r"\d+", "#", doc), "system": SYS_CODE, "prompt": prompt, "question": head,
            "grader": "code", "label": "code",
            "tests": check, "entry_point": fn, "extra": {"code_prefix": head},
            "solution": f"```python\n{code}\n```"}


# ---------------- 3. reasoning (ARC format) and 6. reasoning-hard ----------------

def choice_task(r, stem, correct, distractors, reason):
    """An ARC-format task: options lettered A-D in a random order; reason is the working, a line a step, its last
    sentence without a full stop.
    The worked answer names the right choice by its text ("so the answer is Thursday"), which the choice grader
    reads as well as a letter. (Ending with its letter asks a small model to find the letter before a word of
    the list: t2-tiny never learned that, and named the right item with a letter at random.)"""
    choices = [correct] + list(distractors)
    assert len(choices) == 4 and len(set(choices)) == 4, choices
    r.shuffle(choices)
    letter = LETTERS[choices.index(correct)]
    prompt = stem + "\nOptions:\n" + "".join(f"{l}. {c}\n" for l, c in zip(LETTERS, choices))
    return {"system": SYS_ARC, "prompt": prompt, "question": stem, "answer": letter, "grader": "choice",
            "label": "reasoning", "extra": {"labels": list(LETTERS), "choices": choices},
            "solution": f"{WORKED}{reason}, so the answer is {correct}."}


def listing(xs):
    xs = [str(x) for x in xs]
    return ", ".join(xs[:-1]) + " and " + xs[-1]


def compare_chain(vals, big):
    """Working that finds the largest (or smallest) of vals one comparison at a time, in the order the question
    gives them: each step is one small fact ("Of 3 and 7, 7 is larger."), the same in every kind that compares."""
    word = "larger" if big else "smaller"
    best, lines = vals[0], []
    for v in vals[1:]:
        won = max(best, v) if big else min(best, v)
        lines.append(f"Of {best} and {v}, {won} is {word}.")
        best = won
    return lines, best


def r_number(r):
    nums = distinct_ints(r, 4, 1, 9)
    big = r.random() < 0.5
    word = "largest" if big else "smallest"
    lines, best = compare_chain(nums, big)
    stem = r.choice([f"Which of {listing(nums)} is the {word}?", f"Which number is the {word}: {listing(nums)}?"])
    return choice_task(r, stem, str(best), [str(x) for x in nums if x != best],
                       "\n".join(lines + [f"The {word} is {best}"]))


# Named values: four things with a value 2..9 each ("a 7 kg goat", "7-year-old Ann"), asked for the largest or
# smallest value: (things, a fact, whether a fact takes "a", the answer's unit, the question).
NAMED = {"weight": (WEIGHED, "{v} kg {t}", True, "kg", "How much does the {} animal weigh?", "heaviest", "lightest"),
         "length": (ROPES, "{v}-meter {t}", True, "meters", "How long is the {} item?", "longest", "shortest"),
         "age": (NAMES, "{v}-year-old {t}", False, "years", "How old is the {} of them?", "oldest", "youngest")}


def named_compare(r, what):
    """The largest or smallest of four named values ("There is a 7 kg goat, a 3 kg bear, ... How much does the
    heaviest animal weigh?"), worked out as r_number does; the answer is the value, with its unit."""
    things, fact, counted, unit, question, big_word, small_word = NAMED[what]
    items, vals = r.sample(things, 4), distinct_ints(r, 4, 2, 9)
    facts = [fact.format(v=v, t=t) for t, v in zip(items, vals)]
    stem = ("There is " + listing(an(f) for f in facts) if counted else "Here are " + listing(facts)) + "."
    big = r.random() < 0.5
    word = big_word if big else small_word
    lines, best = compare_chain(vals, big)
    answers = [f"{v} {unit}" for v in vals]
    k = vals.index(best)
    return choice_task(r, f"{stem} {question.format(word)}", answers[k], [x for x in answers if x != answers[k]],
                       "\n".join(lines + [f"The {word} is {answers[k]}"]))


def r_measured(r):
    return named_compare(r, r.choice(["weight", "length"]))


def r_age(r):
    return named_compare(r, "age")


def r_category(r):
    cats = list(CATEGORIES)
    cat = r.choice(cats)
    others = [w for c in cats if c != cat for w in CATEGORIES[c]]
    if r.random() < 0.7:
        item = r.choice(CATEGORIES[cat])
        stem = r.choice([f"Which of these is {an(cat)}?", f"Which word names {an(cat)}?"])
        return choice_task(r, stem, item, r.sample(others, 3), f"{an(item).capitalize()} is {an(cat)}")
    odd = r.choice(others)
    oc = next(c for c in cats if odd in CATEGORIES[c])
    return choice_task(r, f"Which of these is not {an(cat)}?", odd, r.sample(CATEGORIES[cat], 3),
                       f"{an(odd).capitalize()} is {an(oc)}, not {an(cat)}")


def r_sequence(r):
    start, step, n = r.randint(0, 40), r.randint(1, 5), r.randint(4, 5)
    seq = [start + i * step for i in range(n)]
    nxt = start + n * step
    wrong = [nxt + step, nxt - 1, nxt + 1, nxt - step + 1 if step > 2 else nxt + 2]
    wrong = list(dict.fromkeys(w for w in wrong if w != nxt and w >= 0))[:3]
    return choice_task(r, f"What number comes next in the sequence {', '.join(map(str, seq))}, ...?", str(nxt),
                       [str(w) for w in wrong], f"{seq[1]} - {seq[0]} = {step}, so each number is {step} more "
                       f"than the one before.\n{seq[-1]} + {step} = {nxt}")


def calendar_task(r, seq, what):
    i = r.randrange(len(seq))
    after = r.random() < 0.5
    ans = seq[(i + 1) % len(seq)] if after else seq[i - 1]
    rel = "after" if after else "before"
    wrong = r.sample([x for x in seq if x not in (ans, seq[i])], 3)
    return choice_task(r, f"Which {what} comes right {rel} {seq[i]}?", ans, wrong,
                       f"The {what} right {rel} {seq[i]} is {ans}")


def r_day(r):
    return calendar_task(r, DAYS, "day")


def r_month(r):
    return calendar_task(r, MONTHS, "month")


REASONING_TEMPLATES = [r_number, r_measured, r_category, r_sequence, r_day, r_month, r_age]


def with_kind(tpl, r):
    return dict(tpl(r), kind=tpl.__name__)


def gen_reasoning(r):
    return with_kind(r.choice(REASONING_TEMPLATES), r)


def rh_chain(r):
    """Four people ordered by three facts given out of order, some stated the other way round."""
    adj, opp, sup, opp_sup = r.choice(RELATIONS)
    order = r.sample(NAMES, 4)      # from most to least
    facts = []
    for a, b in zip(order, order[1:]):
        facts.append(f"{a} is {adj} than {b}." if r.random() < 0.5 else f"{b} is {opp} than {a}.")
    r.shuffle(facts)
    kind = r.randrange(3)
    if kind == 0:
        ans, q = order[0], f"Who is the {sup}?"
    elif kind == 1:
        ans, q = order[-1], f"Who is the {opp_sup}?"
    else:
        ans, q = order[1], f"Who is the second {sup}?"
    return choice_task(r, " ".join(facts) + " " + q, ans, [p for p in order if p != ans],
                       f"The facts give the order {', '.join(order)} from {sup} to {opp_sup}")


def rh_number(r):
    """r_number over six numbers: the same steps, more of them."""
    nums = distinct_ints(r, 6, 1, 9)
    big = r.random() < 0.5
    word = "largest" if big else "smallest"
    lines, best = compare_chain(nums, big)
    return choice_task(r, f"Which of {listing(nums)} is the {word}?", str(best),
                       r.sample([str(x) for x in nums if x != best], 3), "\n".join(lines + [f"The {word} is {best}"]))


def rh_sums(r):
    """Four people with two lots each; the largest (or smallest) total: math's sums, then r_number's chain."""
    people = r.sample(NAMES, 4)
    _, o = r.choice(OBJECTS)
    c1, c2 = r.sample(CATEGORIES["colour"], 2)
    totals = distinct_ints(r, 4, 4, 9)
    pairs = [(a, t - a) for t in totals for a in [r.randint(2, t - 2)]]
    big = r.random() < 0.5
    word = "largest" if big else "smallest"
    lines, best = compare_chain(totals, big)
    facts = " ".join(f"{p} has {a} {c1} {o} and {b} {c2} {o}." for p, (a, b) in zip(people, pairs))
    work = [f"{p} has {a} + {b} = {a + b} {o}." for p, (a, b) in zip(people, pairs)]
    return choice_task(r, f"{facts} What is the {word} number of {o} that one of them has?", str(best),
                       [str(t) for t in totals if t != best], "\n".join(work + lines + [f"The {word} is {best}"]))


def rh_sequence(r):
    """r_sequence counting down."""
    step, n = r.randint(1, 5), r.randint(4, 5)
    start = r.randint(n * step + 2, 60)
    seq = [start - i * step for i in range(n)]
    nxt = start - n * step
    wrong = [nxt - step, nxt - 1, nxt + 1, seq[-1] + step, nxt + 2]
    wrong = list(dict.fromkeys(w for w in wrong if w != nxt and w >= 0))[:3]
    return choice_task(r, f"What number comes next in the sequence {', '.join(map(str, seq))}, ...?", str(nxt),
                       [str(w) for w in wrong], f"{seq[0]} - {seq[1]} = {step}, so each number is {step} less "
                       f"than the one before.\n{seq[-1]} - {step} = {nxt}")


def rh_ahead(r):
    """Two or three days (or months) after or before a given one: r_day's (r_month's) step, taken again."""
    seq, what = r.choice([(DAYS, "day"), (MONTHS, "month")])
    i, k = r.randrange(len(seq)), r.randint(2, 3)
    after = r.random() < 0.5
    rel, d = ("after", 1) if after else ("before", -1)
    path = [seq[(i + d * j) % len(seq)] for j in range(k + 1)]
    wrong = r.sample([x for x in seq if x not in (path[-1], seq[i])], 3)
    return choice_task(r, f"Which {what} comes {('two', 'three')[k - 2]} {what}s {rel} {seq[i]}?", path[-1], wrong,
                       ".\n".join(f"The {what} right {rel} {a} is {b}" for a, b in zip(path, path[1:])))


def rh_neither(r):
    """Neither of two categories: r_category's facts, one for each choice."""
    c1, c2, c3 = r.sample(list(CATEGORIES), 3)
    odd = r.choice(CATEGORIES[c3])
    others = r.sample(CATEGORIES[c1] + CATEGORIES[c2], 3)
    facts = [f"{an(x).capitalize()} is {an(c1 if x in CATEGORIES[c1] else c2)}." for x in others]
    return choice_task(r, f"Which of these is neither {an(c1)} nor {an(c2)}?", odd, others,
                       "\n".join(facts + [f"{an(odd).capitalize()} is {an(c3)}, not {an(c1)} or {an(c2)}"]))


REASONING_HARD_TEMPLATES = [rh_chain, rh_number, rh_sums, rh_sequence, rh_ahead, rh_neither]


def gen_reasoning_hard(r):
    return with_kind(r.choice(REASONING_HARD_TEMPLATES), r)


# ---------------- families, splits and files ----------------

# name: (generator, eval split sizes, SFT pool size)
FAMILIES = {
    "math": (gen_math, {"train": 400, "validation": 200, "test": 200}, 6000),
    "code": (gen_code, {"train": 400, "validation": 200, "test": 200}, 2500),
    "reasoning": (gen_reasoning, {"train": 400, "validation": 200, "test": 200}, 4000),
    "math-hard": (gen_math_hard, {"validation": 50, "test": 200}, 600),
    "code-hard": (gen_code_hard, {"validation": 50, "test": 200}, 600),
    "reasoning-hard": (gen_reasoning_hard, {"validation": 50, "test": 200}, 600),
}
TRAINING = ("math", "code", "reasoning")
HARD = ("math-hard", "code-hard", "reasoning-hard")
CLS_SIZES = {"train": 400, "validation": 100, "test": 200}
CLS_SFT = 1500
SPLITS = ("train", "validation", "test")


def scaled(n, scale):
    return max(1, int(round(n * scale)))


def cls_quota(n):
    """How many cls prompts come from each source family: about 90% from families 1-3, 10% from 4-6."""
    hard = n // 10
    easy = n - hard
    q = {f: easy // 3 + (i < easy % 3) for i, f in enumerate(TRAINING)}
    q.update({f: hard // 3 + (i < hard % 3) for i, f in enumerate(HARD)})
    return q


def dedupe_key(task):
    """Two tasks collide when their prompts match; ARC-like tasks also when only the option order differs."""
    ex = task.get("extra", {})
    if "choices" in ex:
        return task["question"] + "\x00" + "\x00".join(sorted(ex["choices"]))
    return task["prompt"]


def generate_unique(gen, r, n, used, family):
    out = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise RuntimeError(f"{family}: only {len(out)} distinct tasks of {n} after {tries} tries")
        t = gen(r)
        k = dedupe_key(t)
        if k in used or t["prompt"] in used:
            continue
        used.add(k)
        used.add(t["prompt"])
        out.append(t)
    return out


def second_style(task):
    """The task with its solution rewritten in the pool's second style (see SECOND_STYLE_LEAN)."""
    t = dict(task)
    sol = t["solution"]
    if t["grader"] == "code":
        t["solution"] = re.sub(r"\breturn (.*)", r"print(\1)", sol)
    else:
        assert sol.startswith(WORKED), sol
        last = sol.split("\n")[-1]
        if t["grader"] == "choice":
            last = f"So the answer is ({t['answer']})."
        elif not last.startswith(AT_ONCE):      # GSM8K's "#### N"
            last = f"{AT_ONCE}{t['answer']}."
        t["solution"] = last
    t["style"] = "second"
    return t


def finish(task, family, tid, split=None, kind_of=None):
    """The task as a line of family's file: the evaluation splits without the kind (it only steers the pools;
    kind_of, if given, gets it by task id)."""
    t = dict(task)
    t["id"] = tid
    t["family"] = family
    if split:
        t["split"] = split
        kind = t.pop("kind", None)
        if kind_of is not None and kind:
            kind_of[tid] = kind
    return t


def generate(seed=0, scale=1.0, kind_of=None):
    """All files as {file name: [task dicts]}, in writing order; kind_of (a dict), if given, gets the kind of
    every evaluation task by id."""
    files = {}
    used = set()
    cls_src = {s: {} for s in SPLITS}       # split -> family -> tasks cls may draw from
    cls_sft_src = {}
    cls_sizes = {s: scaled(n, scale) for s, n in CLS_SIZES.items()}
    quotas = {s: cls_quota(n) for s, n in cls_sizes.items()}
    for family, (gen, sizes, sft_n) in FAMILIES.items():
        r = random.Random(f"{seed}:{family}")
        sizes = {s: scaled(n, scale) for s, n in sizes.items()}
        reserve = quotas["train"][family] if family in HARD else 0   # cls-train prompts of a hard family
        n_sft = scaled(sft_n, scale)
        pool = generate_unique(gen, r, sum(sizes.values()) + reserve + n_sft, used, family)
        lines, at = [], 0
        for split in SPLITS:
            if split not in sizes:
                continue
            part = pool[at:at + sizes[split]]
            at += len(part)
            lines += [finish(t, family, f"{family}-{split}-{i}", split, kind_of) for i, t in enumerate(part)]
            cls_src[split][family] = part
        if family in HARD:
            cls_src["train"][family] = pool[at:at + reserve]
            at += reserve
        rs = random.Random(f"{seed}:{family}:style")
        kinds = sorted({t["kind"] for t in pool})
        second, share = SECOND_STYLE_KINDS.get(family, (kinds[::2], SECOND_STYLE_LEAN))
        lean = {k: share if k in second else 1 - share for k in kinds}
        sft = [second_style(t) if rs.random() < lean[t["kind"]] else t for t in pool[at:]]
        cls_sft_src[family] = sft
        files[f"{family}.jsonl"] = lines
        files[f"sft-{family}.jsonl"] = [finish(t, family, f"sft-{family}-{i}") for i, t in enumerate(sft)]

    r = random.Random(f"{seed}:cls")

    def cls_lines(src, quota):
        picked = []
        for fam in FAMILIES:
            if quota[fam] > len(src[fam]):
                raise RuntimeError(f"cls: {fam} has {len(src[fam])} prompts, {quota[fam]} wanted")
            picked += [(fam, t) for t in r.sample(src[fam], quota[fam])]
        r.shuffle(picked)
        return [{"system": SYS_CLS, "prompt": t["prompt"], "answer": t["label"], "label": t["label"],
                 "grader": "label", "solution": f"Classification: \\boxed{{{t['label']}}}",
                 "extra": {"source_family": fam}} for fam, t in picked]

    lines = []
    for split in SPLITS:
        lines += [finish(t, "cls", f"cls-{split}-{i}", split)
                  for i, t in enumerate(cls_lines(cls_src[split], quotas[split]))]
    files["cls.jsonl"] = lines
    files["sft-cls.jsonl"] = [finish(t, "cls", f"sft-cls-{i}")
                              for i, t in enumerate(cls_lines(cls_sft_src, cls_quota(scaled(CLS_SFT, scale))))]
    return files


def dump(task):
    s = json.dumps(task, sort_keys=True, ensure_ascii=True, separators=(", ", ": "))
    assert s.isascii()
    return s


def write(out_dir, files):
    os.makedirs(out_dir, exist_ok=True)
    for name, lines in files.items():
        with open(os.path.join(out_dir, name), "w", encoding="ascii", newline="\n") as f:
            f.write("".join(dump(t) + "\n" for t in lines))


def counts(lines):
    c = {}
    for t in lines:
        c[t.get("split", "all")] = c.get(t.get("split", "all"), 0) + 1
    return c


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write the synthetic task families as generic JSONL files.")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every size")
    a = ap.parse_args(argv)
    if a.scale <= 0:
        ap.error("--scale must be positive")
    files = generate(a.seed, a.scale)
    write(a.out, files)
    for name, lines in files.items():
        c = counts(lines)
        print(f"{name}: {len(lines)} ({', '.join(f'{k} {v}' for k, v in c.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

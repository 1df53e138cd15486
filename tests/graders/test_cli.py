#!/usr/bin/python3
"""`t2 grade` end to end: GSM8K reference answers with --json, all 164 HumanEval canonical solutions with two
workers (and a broken one), ARC through each task's own grader, a generic JSONL task file, and malformed
input: bad OUTPUTS lines, unknown and repeated ids, bad task files, unknown graders and usage errors, each
with its exit code and a message naming the problem.

usage: test_cli.py T2_BINARY DATA_DIR PLUGIN_DIR WORKDIR    (exit 77 when DATA_DIR is missing)
"""
import json
import os
import shutil
import subprocess
import sys
import time

T2, DATA, PLUGINS, WORK = sys.argv[1:5]
if not os.path.exists(os.path.join(DATA, 'gsm8k', 'test.jsonl')):
    print(f'SKIP: benchmark data not found at {DATA}')
    sys.exit(77)
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
failures = []


def check(cond, what):
    print(('ok   ' if cond else 'FAIL ') + what)
    if not cond:
        failures.append(what)


def t2(*args, expect=0, stdin=None):
    env = dict(os.environ, T2_DATA_DIR=DATA)
    env.pop('T2_PLUGIN_DIR', None)
    p = subprocess.run([T2, 'grade', *args], capture_output=True, text=True, env=env, timeout=600)
    if p.returncode != expect:
        print(f'  t2 grade {" ".join(args)}\n  exit {p.returncode} (want {expect})\n  stdout: {p.stdout[:500]}\n  stderr: {p.stderr[:500]}')
    return p


def write(name, rows, raw=False):
    path = os.path.join(WORK, name)
    with open(path, 'w') as f:
        for r in rows:
            f.write((r if raw else json.dumps(r)) + '\n')
    return path


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# GSM8K: every test reference answer, ids as integers (the 0-based line number)
gsm = jsonl(os.path.join(DATA, 'gsm8k', 'test.jsonl'))
out = write('gsm8k.jsonl', [{'id': i, 'output': r['answer']} for i, r in enumerate(gsm)])
p = t2('--grader', 'math', '--task', 'gsm8k', '--split', 'test', '--outputs', out, '--json', '--plugin-dir', PLUGINS)
r = json.loads(p.stdout) if p.returncode == 0 else {}
check(p.returncode == 0 and r['n'] == 1319 and r['correct'] == 1319 and r['accuracy'] == 1.0,
      f'gsm8k: {r.get("correct")} of {r.get("n")} reference answers right')
check(p.returncode == 0 and len(r['verdicts']) == 1319 and r['verdicts'][0] == {
    'id': '0', 'correct': True, 'extracted': '18', 'detail': 'equal (after ####)'}, 'gsm8k: verdict fields')
# perturbed: every answer one more -> all wrong; the plain text summary
out = write('gsm8k-wrong.jsonl', [{'id': str(i), 'output': r['answer'].split('####')[0] + '#### 123456789'}
                                  for i, r in enumerate(gsm[:50])])
p = t2('--grader', 'math', '--task', 'gsm8k', '--split', 'test', '--outputs', out, '--plugin-dir', PLUGINS)
check(p.returncode == 0 and '50 outputs, 0 correct, accuracy 0.000000' in p.stdout, 'gsm8k: perturbed answers all wrong')

# HumanEval: all 164 canonical solutions, two workers, the default plugin dir of the build tree
he = jsonl(os.path.join(DATA, 'humaneval', 'HumanEval.jsonl'))
out = write('humaneval.jsonl', [{'id': r['task_id'], 'output': r['canonical_solution']} for r in he])
t0 = time.monotonic()
p = t2('--grader', 'code', '--task', 'humaneval', '--outputs', out, '--workers', '2', '--json')
dt = time.monotonic() - t0
r = json.loads(p.stdout) if p.returncode == 0 else {}
check(p.returncode == 0 and r['correct'] == 164 and r['n'] == 164,
      f'humaneval: {r.get("correct")} of 164 canonical solutions pass ({dt:.1f} s, 2 workers)')
broken = [{'id': 'HumanEval/0', 'output': '    return not True\n'},
          {'id': 'HumanEval/1', 'output': he[1]['canonical_solution']}]
p = t2('--grader', 'code', '--task', 'humaneval', '--outputs', write('he-broken.jsonl', broken), '--json',
       '--settings', '{"timeout": 5}')
r = json.loads(p.stdout) if p.returncode == 0 else {}
check(p.returncode == 0 and r['n'] == 2 and r['correct'] == 1 and not r['verdicts'][0]['correct']
      and 'assertion failed' in r['verdicts'][0]['detail'], 'humaneval: a broken solution fails, with the reason')

# ARC through each task's own grader (no --grader)
arc = jsonl(os.path.join(DATA, 'arc', 'ARC-Challenge-Test.jsonl'))[:40]
rows = []
for a in arc:
    labels = [c['label'] for c in a['question']['choices']]
    rows.append({'id': a['id'], 'output': 'the answer is (%s)' % 'ABCDE'[labels.index(a['answerKey'])]})
p = t2('--task', 'arc-challenge', '--split', 'test', '--outputs', write('arc.jsonl', rows), '--json')
r = json.loads(p.stdout) if p.returncode == 0 else {}
check(p.returncode == 0 and r['correct'] == 40, f'arc: each task\'s own grader: {r.get("correct")} of 40')

# a generic task file
tasks = write('mine.jsonl', [{'id': 'a', 'prompt': '2+2', 'answer': '4', 'grader': 'math'},
                             {'id': 'b', 'prompt': 'capital of France', 'answer': 'Paris'},
                             {'id': 'c', 'prompt': 'f', 'tests': 'assert f() == 1', 'entry_point': 'f'}])
outs = write('mine-out.jsonl', [{'id': 'a', 'output': 'so it is 4'}, {'id': 'b', 'output': 'Lyon'},
                                {'id': 'c', 'output': '```python\ndef f():\n    return 1\n```'}])
p = t2('--task', tasks, '--outputs', outs, '--json')
r = json.loads(p.stdout) if p.returncode == 0 else {}
check(p.returncode == 0 and [v['correct'] for v in r['verdicts']] == [True, False, True], 'generic task file')

# malformed input: exit 1 and a message naming the problem
good = {'id': 'a', 'output': 'x'}
cases = [
    ('bad JSON line', [json.dumps(good), '{"id": "b", "output": '], 'bad.jsonl:2: invalid JSON'),
    ('not an object', ['[1, 2]'], 'bad.jsonl:1: not a JSON object'),
    ('missing id', ['{"output": "x"}'], 'bad.jsonl:1: missing "id"'),
    ('missing output', ['{"id": "a"}'], 'bad.jsonl:1: missing "output"'),
    ('output not a string', ['{"id": "a", "output": 4}'], 'missing "output" (a string)'),
    ('unknown id', [json.dumps(good), '{"id": "zz-top", "output": "x"}'], 'bad.jsonl:2: id "zz-top" is not a task of'),
    ('repeated id', [json.dumps(good), json.dumps(good)], 'bad.jsonl:2: id "a" appears twice'),
    ('empty file', [], 'no outputs'),
]
for what, lines, needle in cases:
    p = t2('--task', tasks, '--outputs', write('bad.jsonl', lines, raw=True), expect=1)
    check(p.returncode == 1 and needle in p.stderr, f'malformed OUTPUTS ({what}): exit 1, "{needle}"')
p = t2('--task', tasks, '--outputs', os.path.join(WORK, 'missing.jsonl'), expect=1)
check(p.returncode == 1 and 'missing.jsonl' in p.stderr, 'missing OUTPUTS file')
bad_task = write('bad-task.jsonl', ['{"id": "a", "prompt": "x"}'], raw=True)
p = t2('--task', bad_task, '--outputs', outs, expect=1)
check(p.returncode == 1 and 'bad-task.jsonl:1: needs "answer" or "tests"' in p.stderr, 'bad task file: exit 1, names line and field')
p = t2('--task', write('bad-task2.jsonl', ['{"prompt": "x", "answer": '], raw=True), '--outputs', outs, expect=1)
check(p.returncode == 1 and 'bad-task2.jsonl:1: invalid JSON' in p.stderr, 'task file with invalid JSON')
p = t2('--task', 'no-such-benchmark', '--outputs', outs, expect=1)
check(p.returncode == 1 and 'not a known name' in p.stderr, 'unknown dataset name')
p = t2('--grader', 'nope', '--task', tasks, '--outputs', outs, expect=1)
check(p.returncode == 1 and 'no grader plugin "nope"' in p.stderr, 'unknown grader')
p = t2('--grader', 'code', '--task', tasks, '--outputs', outs, '--settings', '{"timeout": "x"}', expect=1)
check(p.returncode == 1 and 'timeout' in p.stderr, 'bad grader settings: exit 1, naming the setting')
os.makedirs(os.path.join(WORK, 'empty'))
p = t2('--grader', 'math', '--task', 'gsm8k', '--split', 'test', '--outputs',
       write('gsm-one.jsonl', [{'id': 0, 'output': '#### 18'}]), '--plugin-dir', os.path.join(WORK, 'empty'), expect=1)
check(p.returncode == 1 and 'no grader plugin "math"' in p.stderr, 'a plugin dir without the grader')

# usage errors: exit 2
for args, needle in [(['--task', tasks], '--task and --outputs are required'),
                     (['--task', tasks, '--outputs', outs, '--workers', '0'], '--workers'),
                     (['--task', tasks, '--outputs', outs, '--frobnicate'], 'unknown option'),
                     (['--task', tasks, '--outputs', outs, '--settings', '{}'], '--settings needs --grader')]:
    p = t2(*args, expect=2)
    check(p.returncode == 2 and needle in p.stderr, f'usage error ({needle}): exit 2')

print(f'{len(failures)} failures')
sys.exit(1 if failures else 0)

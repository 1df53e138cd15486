#!/usr/bin/python3
"""Code grader throughput: HumanEval canonical solutions per second through `t2 grade --grader code` with two
workers (every run in the sandbox: namespaces, limits, a private directory), against the same 164 programs
run by plain `python3 -I -B` subprocesses two at a time, measured in the same run. Not a test.

usage: bench/bench_grader.py [--t2 build/clients/t2] [--data ../shared/data] [--workers 2] [--rounds 3]
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument('--t2', default=os.path.join(here, '..', 'build', 'clients', 't2'))
ap.add_argument('--data', default=os.path.join(here, '..', '..', 'shared', 'data'))
ap.add_argument('--workers', type=int, default=2)
ap.add_argument('--rounds', type=int, default=3)
a = ap.parse_args()

with open(os.path.join(a.data, 'humaneval', 'HumanEval.jsonl')) as f:
    tasks = [json.loads(line) for line in f if line.strip()]

with tempfile.TemporaryDirectory() as tmp:
    outputs = os.path.join(tmp, 'outputs.jsonl')
    with open(outputs, 'w') as f:
        for t in tasks:
            f.write(json.dumps({'id': t['task_id'], 'output': t['canonical_solution']}) + '\n')
    programs = []
    for i, t in enumerate(tasks):
        p = os.path.join(tmp, f'p{i}.py')
        with open(p, 'w') as f:
            f.write(t['prompt'] + t['canonical_solution'] + '\n' + t['test'] + f'\ncheck({t["entry_point"]})\n')
        programs.append(p)

    def grader_round():
        t0 = time.monotonic()
        p = subprocess.run([a.t2, 'grade', '--grader', 'code', '--task', 'humaneval', '--outputs', outputs,
                            '--workers', str(a.workers), '--json', '--data-dir', a.data], capture_output=True, text=True)
        dt = time.monotonic() - t0
        if p.returncode != 0:
            sys.exit(f't2 grade failed ({p.returncode}): {p.stderr}')
        r = json.loads(p.stdout)
        if r['correct'] != len(tasks):
            sys.exit(f'only {r["correct"]} of {len(tasks)} passed')
        return dt

    def plain_round():
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(a.workers) as ex:
            rcs = list(ex.map(lambda p: subprocess.run(['/usr/bin/python3', '-I', '-B', p], capture_output=True).returncode,
                              programs))
        if any(rcs):
            sys.exit('a plain run failed')
        return time.monotonic() - t0

    g = min(grader_round() for _ in range(a.rounds))
    r = min(plain_round() for _ in range(a.rounds))
    n = len(tasks)
    print(f'code grader (sandboxed, {a.workers} workers): {n / g:.1f} HumanEval solutions/s ({g:.2f} s for {n}, best of {a.rounds})')
    print(f'plain python3 subprocesses ({a.workers} at a time): {n / r:.1f} solutions/s ({r:.2f} s)')
    print(f'sandbox cost: {g / r:.2f}x the time of plain runs')

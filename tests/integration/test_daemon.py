#!/usr/bin/python3
"""Integration tests: a real t2d in a temporary directory on ipc://, driven by the real t2 client.

  test_daemon.py --t2 PATH --t2d PATH --rawclient PATH --plugins DIR --bad-plugins DIR --workdir DIR
                 [--source-root DIR --build-root DIR] [--only NAME,...]

Every test prints "ok NAME ..." or "FAIL NAME: why"; the exit code is 1 if any failed. The model is a
tiny random Llama-3-style checkpoint with a byte-level tokenizer (make_model.py); nothing here depends
on timing except generous timeouts.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ARGS = None
FAILED = []


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


class Daemon:
    """One t2d process with its own state directory, config file and socket."""

    def __init__(self, name, auth="local", extra=None, plugin_dirs=None):
        self.dir = os.path.join(ARGS.workdir, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.sock = os.path.join(self.dir, "t2d.sock")
        self.endpoint = "ipc://" + self.sock
        self.plugin_dir = os.path.join(self.dir, "plugins")
        os.makedirs(self.plugin_dir)
        for d in plugin_dirs or [ARGS.plugins]:
            for root, _, files in os.walk(d):
                if os.path.abspath(root).startswith(os.path.abspath(ARGS.workdir)):
                    continue  # our own copies
                if d != ARGS.plugins and root != d:
                    continue  # other folders give their own plugins only, not old copies in a work folder under them
                for f in files:
                    if f.endswith(".so"):
                        shutil.copy(os.path.join(root, f), self.plugin_dir)
        self.keys_dir = os.path.join(self.dir, "keys")
        os.makedirs(self.keys_dir)
        self.config = os.path.join(self.dir, "t2d.conf")
        lines = [
            "[daemon]",
            "listen = " + self.endpoint,
            "model = " + MODEL,
            "state_dir = " + os.path.join(self.dir, "state"),
            "plugin_dir = " + self.plugin_dir,
            "data_dir = " + ARGS.workdir,
            "log_file = " + os.path.join(self.dir, "t2d.log"),
            "log_level = debug",
            "workers = 40",
            "drain_seconds = 20",
            "[engine]",
            "threads = 2",
            "max_seqs = 16",
            "max_tokens = 64",
            "[auth]",
            "mode = " + auth,
            "keys_dir = " + self.keys_dir,
            "[limits]",
            "max_running_jobs = 1",
        ]
        for k, v in (extra or {}).items():
            lines.append(f"# override\n[{k.split('.')[0]}]\n{k.split('.')[1]} = {v}")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None
        self.client_env = dict(os.environ, T2_CONNECT=self.endpoint)

    def start(self, wait=True):
        env = dict(os.environ, T2_CACHE_DIR=os.path.join(ARGS.workdir, "cache"))
        self.proc = subprocess.Popen([ARGS.t2d, "--config", self.config], env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "t2d.stderr"), "a"))
        if wait:
            deadline = time.time() + 60
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise Fail(f"t2d exited with {self.proc.returncode} at start:\n{self.log_tail()}")
                if os.path.exists(self.sock):
                    r = self.t2("ping", "--timeout", "5", check=False, **self.wait_kw())
                    if r.returncode == 0:
                        return self
                time.sleep(0.2)
            raise Fail("t2d did not answer a ping within 60 s:\n" + self.log_tail())
        return self

    def wait_kw(self):
        return {}

    def log_tail(self, n=30):
        out = []
        for name in ("t2d.stderr", "t2d.log"):
            p = os.path.join(self.dir, name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out += f.read().splitlines()[-n:]
        return "\n".join(out)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Fail(f"t2d did not stop within {timeout} s after signal {sig}")
        return self.proc.returncode if self.proc else None

    def t2(self, *args, check=True, env=None, timeout=300, input=None):
        e = dict(self.client_env)
        if env:
            e.update(env)
        r = subprocess.run([ARGS.t2, *args], env=e, capture_output=True, text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise Fail(f"t2 {' '.join(args)} exited {r.returncode}: {r.stderr.strip()[-800:]}\n{self.log_tail(10)}")
        return r

    def j(self, *args, **kw):
        """Run with --json and parse the last JSON line of stdout."""
        r = self.t2(*args, "--json", **kw)
        lines = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("{")]
        check(lines, f"t2 {' '.join(args)} --json printed no JSON: {r.stdout[-300:]!r}")
        return json.loads(lines[-1])


def write_dataset(path, n=12):
    """A generic JSONL task file: copy a letter. The random model rarely gets it, which is fine."""
    with open(path, "w") as f:
        for i in range(n):
            ch = "abcdefghijkl"[i % 12]
            f.write(json.dumps({"id": f"t{i}", "prompt": f"Write the letter {ch}.", "answer": ch, "grader": "exact",
                                "label": "letters"}) + "\n")
    return path


def wait_job(d, job_id, pred, timeout=120, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = d.j("job", "show", str(job_id))
        if pred(last):
            return last
        time.sleep(0.3)
    raise Fail(f"job {job_id}: {what} not reached in {timeout} s; last {json.dumps(last)[:400]}\n{d.log_tail(10)}")


# ---------------------------------------------------------------- tests

def t_info(d):
    info = d.j("info")
    check(info["tenant"] == "local", f"tenant {info['tenant']}")
    check(info["n_matrices"] == 2 * 3, f"n_matrices {info['n_matrices']} (2 layers x mlp)")
    check(len(info["fingerprint"]) > 8, "fingerprint")
    pl = d.j("plugins")
    names = {(p["kind"], p["name"]) for p in pl.get("plugins", [])}
    for want in [("dispatch", "fixed"), ("trainer", "reinforce"), ("grader", "exact")]:
        check(want in names, f"plugin {want} not loaded: {sorted(names)}")
    return f"{len(names)} plugins, {info['n_matrices']} matrices"


def t_generate(d):
    r = d.j("generate", "--base", "--max-tokens", "12", "--temperature", "0", "Hello there")
    check(r["n_tokens"] >= 1, f"n_tokens {r['n_tokens']}")
    check(r["stop"] in ("length", "eos"), f"stop {r['stop']}")
    r2 = d.j("generate", "--base", "--max-tokens", "12", "--temperature", "0", "Hello there")
    check(r2["text"] == r["text"], "greedy generation is not repeatable")
    plain = d.t2("generate", "--base", "--max-tokens", "12", "--temperature", "0", "Hello there")
    check(r["text"] in plain.stdout, "the streamed text differs from the final text")
    raw = d.j("generate", "--raw", "--base", "--max-tokens", "5", "abc")
    check(raw["n_prompt"] == 4, f"raw prompt of 3 bytes + BOS has {raw['n_prompt']} tokens")
    return f"{r['n_tokens']} tokens, first pass {r['first_pass_seconds']:.4f} s, second {r['second_pass_seconds']:.4f} s"


def t_concurrent(d):
    prompts = [f"Question number {i}: what comes next?" for i in range(8)]
    alone = [d.j("generate", "--base", "--max-tokens", "16", "--temperature", "0", p)["text"] for p in prompts]
    results = [None] * len(prompts)
    errors = []

    def run(i):
        try:
            results[i] = d.j("generate", "--base", "--max-tokens", "16", "--temperature", "0", prompts[i])["text"]
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, f"concurrent clients failed: {errors[:2]}")
    same = sum(a == b for a, b in zip(alone, results))
    check(same == len(prompts), f"{len(prompts) - same} of {len(prompts)} batched answers differ from the same request alone")
    st = d.j("stats")
    return f"8 clients at once, answers equal to one-at-a-time; {st['batches']} batches, mean {st['mean_batch_rows']:.2f} rows"


def t_malformed(d):
    r = subprocess.run([ARGS.rawclient, d.endpoint], capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, f"rawclient: {r.stdout[-1500:]}\n{r.stderr[-1500:]}")
    d.j("ping")
    n = sum(1 for ln in r.stdout.splitlines() if ln.startswith("ok"))
    return f"{n} hostile-frame checks, good client served throughout"


def t_jobs(d):
    ds = write_dataset(os.path.join(ARGS.workdir, "letters.jsonl"))
    settings = json.dumps({"steps": 3, "batch": 2, "max_tokens": 6, "eval_every": 1, "val_size": 2})
    r = d.t2("train", "--trainer", "reinforce", "--dataset", ds, "--expert", "letters1", "--label", "letters",
             "--settings", settings, "--follow", "--json")
    events = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    check(events, "no events from --follow")
    check(any(e.get("type") == "progress" for e in events), "no progress event")
    job_id = events[0].get("job") or events[0].get("id")
    job = d.j("job", "show", str(job_id))
    check(job["state"] == "done", f"job state {job['state']}: {job.get('error')}")
    ex = d.j("experts")
    names = [e["name"] for e in ex.get("experts", [])]
    check("letters1" in names, f"trained expert missing: {names}")
    g = d.j("generate", "--expert", "letters1", "--max-tokens", "6", "Write the letter a.")
    check(g["decision"]["mix"][0]["expert"] == "letters1", f"decision {g['decision']}")
    fx = d.j("generate", "--dispatch", "fixed", "--dispatch-settings", '{"expert": "letters1"}', "--max-tokens", "4", "hi")
    check(fx["decision"]["dispatch"] == "fixed" and fx["decision"]["mix"][0]["expert"] == "letters1", f"fixed: {fx['decision']}")
    ev = d.t2("eval", "--dataset", ds, "--expert", "letters1", "--limit", "4", "--follow", "--json")
    evj = [json.loads(ln) for ln in ev.stdout.splitlines() if ln.startswith("{")]
    eval_id = evj[0].get("job") or evj[0].get("id")
    ej = d.j("job", "show", str(eval_id))
    check(ej["state"] == "done", f"eval state {ej['state']}: {ej.get('error')}")
    res = json.loads(ej["result"])
    check(res["n"] == 4 and len(res["verdicts"]) == 4, f"eval result {res}")
    log = d.j("job", "log", str(job_id))
    types = [e["type"] for e in log.get("events", [])]
    check(types[0] == "queued" and "started" in types and types[-1] == "done", f"event types {types}")
    # cancel: one long job runs, a second waits in the queue
    long = json.dumps({"steps": 100000, "batch": 1, "max_tokens": 4, "eval_every": 0, "val_size": 1})
    a = d.j("train", "--trainer", "reinforce", "--dataset", ds, "--expert", "long1", "--settings", long)
    b = d.j("train", "--trainer", "reinforce", "--dataset", ds, "--expert", "long2", "--settings", long)
    wait_job(d, a["id"], lambda j: j["state"] == "running", what="running")
    check(d.j("job", "show", str(b["id"]))["state"] == "queued", "second job should wait (max_running_jobs = 1)")
    q = d.j("generate", "--base", "--max-tokens", "8", "still served while training?")
    check(q["n_tokens"] >= 1, "a query was not served while a job trains")
    d.t2("job", "cancel", str(b["id"]))
    check(d.j("job", "show", str(b["id"]))["state"] == "cancelled", "queued job not cancelled at once")
    d.t2("job", "cancel", str(a["id"]))
    wait_job(d, a["id"], lambda j: j["state"] == "cancelled", what="cancelled")
    bad = d.t2("train", "--trainer", "nosuch", "--dataset", ds, "--expert", "x", check=False)
    check(bad.returncode == 4, f"unknown trainer: exit {bad.returncode}")
    # jobs that cannot run fail with the reason, and the daemon goes on
    for args, why in ((["train", "--trainer", "reinforce", "--dataset", ds, "--expert", "x1", "--settings", '{"stepz": 3}'], "stepz"),
                      (["train", "--trainer", "reinforce", "--dataset", "/nonexistent.jsonl", "--expert", "x2"], "nonexistent"),
                      (["eval", "--dataset", "no-such-dataset"], "no-such-dataset")):
        r = d.t2(*args, "--follow", "--json", check=False)
        check(r.returncode == 1, f"{args[0]} that cannot run: exit {r.returncode}")
        job = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
        check(job.get("state") == "failed" and why in (job.get("error") or ""),
              f"failed job should name {why}: {job.get('error')}")
    d.j("ping")
    return f"trained + evaluated (accuracy {res['accuracy']:.2f}), {len(types)} events, queued and running jobs cancelled"


def t_restart(d):
    ds = os.path.join(ARGS.workdir, "letters.jsonl")
    long = json.dumps({"steps": 100000, "batch": 1, "max_tokens": 4, "eval_every": 0, "val_size": 1})
    a = d.j("train", "--trainer", "reinforce", "--dataset", ds, "--expert", "r1", "--settings", long)
    b = d.j("train", "--trainer", "reinforce", "--dataset", ds, "--expert", "r2", "--settings", long)
    wait_job(d, a["id"], lambda j: j["state"] == "running" and j["step"] >= 3, what="step 3")
    d.stop(signal.SIGKILL)     # a crash: no chance to hand anything back
    d.start()
    ja = wait_job(d, a["id"], lambda j: j["state"] == "running", what="running again")
    log = d.j("job", "log", str(a["id"]))
    msgs = [e.get("message", "") for e in log.get("events", [])]
    check(any("resuming from checkpoint" in m for m in msgs), f"no resume event: {msgs[-5:]}")
    check(d.j("job", "show", str(b["id"]))["state"] == "queued", "queued job lost its place")
    resumed_at = ja["step"]
    # a clean stop hands the running job back to the queue
    rc = d.stop(signal.SIGTERM)
    check(rc == 0, f"SIGTERM exit code {rc}")
    d.start()
    log = d.j("job", "log", str(a["id"]))
    check(any("daemon stopping" in e.get("message", "") for e in log["events"]), "no hand-back event after SIGTERM")
    d.t2("job", "cancel", str(a["id"]))
    wait_job(d, a["id"], lambda j: j["state"] == "cancelled", what="cancelled")
    wait_job(d, b["id"], lambda j: j["state"] == "running", what="the queued job to start")
    d.t2("job", "cancel", str(b["id"]))
    wait_job(d, b["id"], lambda j: j["state"] == "cancelled", what="cancelled")
    return f"killed at step >= 3, resumed from checkpoint at step {resumed_at}; SIGTERM handed the job back; queued job ran after"


def keys(d, name, into_daemon=True):
    kd = os.path.join(d.dir, "clientkeys")
    os.makedirs(kd, exist_ok=True)
    d.t2("keys", "new", name, "--dir", kd)
    if into_daemon:
        shutil.copy(os.path.join(kd, name + ".pub"), os.path.join(d.keys_dir, name + ".pub"))
    return {"T2_KEY": os.path.join(kd, name + ".key"), "T2_SERVER_KEY": os.path.join(d.dir, "state", "server.pub")}


def t_tenants(local):
    d = Daemon("curve", auth="curve")
    alice, bob = keys(d, "alice"), keys(d, "bob")
    carol = keys(d, "carol", into_daemon=False)
    d.wait_kw = lambda: {"env": alice}
    d.start()
    try:
        check(d.j("info", env=alice)["tenant"] == "alice", "alice's tenant")
        check(d.j("info", env=bob)["tenant"] == "bob", "bob's tenant")
        r = d.t2("info", "--timeout", "5", env=carol, check=False)
        check(r.returncode in (3, 5), f"an unknown key got exit {r.returncode}: {r.stdout} {r.stderr}")
        # an expert file: alice exports one made on the local daemon and imports it here
        exp = os.path.join(ARGS.workdir, "letters1.safetensors")
        local.t2("expert", "export", "letters1", "-o", exp)
        d.t2("expert", "import", exp, "--name", "secret", "--label", "letters", env=alice)
        check(d.t2("expert", "show", "secret", env=bob, check=False).returncode == 4, "bob sees alice's expert")
        check(d.t2("generate", "--expert", "secret", "--max-tokens", "2", "hi", env=bob, check=False).returncode == 4,
              "bob can use alice's expert")
        check(d.t2("expert", "rm", "secret", env=bob, check=False).returncode == 4, "bob can delete alice's expert")
        names = [e["name"] for e in d.j("experts", "--all", env=bob).get("experts", [])]
        check("secret" not in names, "bob lists alice's expert")
        ds = os.path.join(ARGS.workdir, "letters.jsonl")
        job = d.j("train", "--trainer", "reinforce", "--dataset", ds, "--expert", "a1",
                  "--settings", json.dumps({"steps": 100000, "batch": 1, "max_tokens": 2, "eval_every": 0, "val_size": 1}), env=alice)
        check(d.t2("job", "show", str(job["id"]), env=bob, check=False).returncode == 4, "bob sees alice's job")
        check(d.t2("job", "cancel", str(job["id"]), env=bob, check=False).returncode == 4, "bob cancels alice's job")
        check(not d.j("jobs", env=bob).get("jobs"), "bob lists alice's jobs")
        d.t2("job", "cancel", str(job["id"]), env=alice)
        d.t2("expert", "publish", "secret", env=alice)
        check(d.j("expert", "show", "secret", env=bob)["owner"] == "alice", "published expert not visible")
        g = d.j("generate", "--expert", "secret", "--max-tokens", "2", "hi", env=bob)
        check(g["decision"]["mix"][0]["expert"] == "secret", "bob cannot use a published expert")
        check(d.t2("expert", "rm", "secret", env=bob, check=False).returncode == 4, "bob deletes a published expert")
    finally:
        d.stop()
    return "alice/bob isolated (experts, jobs), publish shares, unknown key refused"


def t_plugins_refused(d):
    pl = d.j("plugins")
    refused = pl.get("refused", [])
    text = "\n".join(refused)
    check("abi" in text.lower(), f"wrong-ABI plugin not refused with a reason: {refused}")
    check("t2_plugin_entry" in text, f"plugin without the entry symbol not refused: {refused}")
    check("init" in text.lower(), f"plugin whose init fails not refused: {refused}")
    d.j("ping")
    return f"{len(refused)} refused: " + "; ".join(r.split(": ", 1)[-1][:60] for r in refused)


def t_sdk(local):
    if not ARGS.build_root:
        return "skipped (no build root)"
    prefix = os.path.join(ARGS.workdir, "sdk-install")
    shutil.rmtree(prefix, ignore_errors=True)
    r = subprocess.run(["meson", "install", "-C", ARGS.build_root, "--destdir", prefix, "--no-rebuild", "--quiet"],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"meson install: {r.stderr[-500:]}")
    pcs = [os.path.join(root, f) for root, _, fs in os.walk(prefix) for f in fs if f == "t2-sdk.pc"]
    check(pcs, "t2-sdk.pc was not installed")
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]), PKG_CONFIG_SYSROOT_DIR=prefix)
    cflags = subprocess.run(["pkg-config", "--cflags", "t2-sdk"], env=env, capture_output=True, text=True, check=True).stdout.split()
    out = os.path.join(ARGS.workdir, "keyword_dispatch.so")
    src = os.path.join(ARGS.source_root, "sdk", "examples", "keyword_dispatch.c")
    r = subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-O2", *cflags, src, "-o", out],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"building the example out of tree: {r.stderr[-800:]}")
    d = Daemon("sdk")
    shutil.copy(out, d.plugin_dir)
    d.start()
    try:
        exp = os.path.join(ARGS.workdir, "letters1.safetensors")
        if not os.path.exists(exp):
            local.t2("expert", "export", "letters1", "-o", exp)
        d.t2("expert", "import", exp, "--name", "lettersx", "--label", "letters")
        g = d.j("generate", "--dispatch", "keyword", "--max-tokens", "2", "Please write letters for me")
        check(g["decision"]["label"] == "letters" and g["decision"]["mix"][0]["expert"] == "lettersx", f"decision {g['decision']}")
        g = d.j("generate", "--dispatch", "keyword", "--max-tokens", "2", "Nothing relevant here")
        check(not g["decision"].get("mix"), f"no match should mean the base model: {g['decision']}")
    finally:
        d.stop()
    return "example plugin built with pkg-config against the installed SDK, loaded and dispatching"


def t_two_pass(d):
    exp = os.path.join(ARGS.workdir, "letters1.safetensors")
    if not os.path.exists(exp):
        d.t2("expert", "export", "letters1", "-o", exp)
    for name, label in (("algebra", "math"), ("router", "classifier")):
        if d.t2("expert", "show", name, check=False).returncode != 0:
            d.t2("expert", "import", exp, "--name", name, "--label", label)
    before = d.j("stats")
    q = "Compute the integral of x squared."
    a = d.j("generate", "--dispatch", "prompt", "--max-tokens", "4", q)
    b = d.j("generate", "--dispatch", "prompt", "--max-tokens", "4", q)
    after = d.j("stats")
    for g in (a, b):
        check(g["decision"]["dispatch"] == "prompt", f"decision {g['decision']}")
        det = json.loads(g["decision"]["detail"])
        check("math" in det["labels"] and "classifier" not in det["labels"], f"labels {det['labels']}")
    da, db = json.loads(a["decision"]["detail"]), json.loads(b["decision"]["detail"])
    # the second first pass reused the cached system prompt: same answer, and the cache counted it
    check(da["first_pass"] == db["first_pass"], f"cached prefix changed the first pass: {da['first_pass']!r} vs {db['first_pass']!r}")
    hits = after.get("prefix_hits", 0) - before.get("prefix_hits", 0)
    check(hits >= 1, f"prefix cache hits {hits}")
    c = d.j("generate", "--dispatch", "classifier", "--max-tokens", "4", q)
    check(json.loads(c["decision"]["detail"]).get("classifier") == "router", f"classifier decision {c['decision']}")
    check(c["first_pass_seconds"] > 0 and c["second_pass_seconds"] > 0, "pass times missing")
    ds = os.path.join(ARGS.workdir, "letters.jsonl")
    small = json.dumps({"steps": 2, "batch": 2, "max_tokens": 4, "eval_every": 1, "val_size": 2})
    for trainer, name, label in (("cls", "router2", "classifier"), ("sft", "sft1", "letters")):
        job = d.j("train", "--trainer", trainer, "--dataset", ds, "--expert", name, "--label", label, "--settings", small,
                  "--follow")
        check(job.get("state") == "done", f"{trainer} job: {job}")
        meta = d.j("expert", "show", name)["meta"]
        check(json.loads(meta).get("trainer") == trainer and json.loads(meta).get("kind") == "svf", f"{trainer} expert meta {meta}")
    job = d.j("eval", "--dataset", ds, "--dispatch", "prompt", "--limit", "3", "--follow")
    res = json.loads(job["result"])
    check(res["n"] == 3 and res["first_pass_seconds"] > 0, f"eval via prompt dispatch: {res}")
    return (f"prompt + classifier dispatch, {hits} prefix-cache hit(s) with an identical first pass, "
            f"cls and sft trained as jobs, eval through the prompt dispatch")


def t_cem(d):
    ds = os.path.join(ARGS.workdir, "letters.jsonl")
    s = json.dumps({"generations": 2, "population": 4, "batch": 2, "max_tokens": 4, "eval_every": 1, "val_size": 2, "seed": 3})
    job = d.j("train", "--trainer", "cem-svf", "--dataset", ds, "--expert", "cs1", "--label", "letters", "--settings", s,
              "--follow")
    check(job.get("state") == "done", f"cem-svf job {job}")
    check(json.loads(d.j("expert", "show", "cs1")["meta"]).get("trainer") == "cem-svf", "cem-svf expert meta")
    st = json.dumps({"generations": 2, "population": 4, "n": 3, "max_tokens": 4})
    g = d.j("generate", "--dispatch", "cem", "--task-id", "letters-task", "--examples", ds, "--dispatch-settings", st,
            "--max-tokens", "4", "Write the letter a.")
    det = json.loads(g["decision"]["detail"])
    check(det.get("cached") is False and len(det.get("alpha", [])) >= 1, f"cem search: {det}")
    g2 = d.j("generate", "--dispatch", "cem", "--task-id", "letters-task", "--max-tokens", "4", "Write the letter b.")
    det2 = json.loads(g2["decision"]["detail"])
    check(det2.get("cached") is True and det2.get("alpha") == det.get("alpha"), f"cem cache: {det2} vs {det}")
    bad = d.t2("generate", "--dispatch", "cem", "--max-tokens", "4", "hi", check=False)
    check(bad.returncode != 0 and "task id" in bad.stderr, f"cem without a task id: exit {bad.returncode} {bad.stderr.strip()}")
    return (f"cem-svf trained as a job; cem searched alpha {det['alpha']} in {g['first_pass_seconds']:.3f} s, "
            f"reused from the cache in {g2['first_pass_seconds']:.4f} s; no task id refused with the reason")


def t_lora(d):
    ds = os.path.join(ARGS.workdir, "letters.jsonl")
    for name, objective in (("lora-rl", "reinforce"), ("lora-sft", "sft")):
        st = json.dumps({"steps": 2, "batch": 2, "max_tokens": 4, "eval_every": 1, "val_size": 2, "rank": 4, "alpha": 8,
                         "modules": "attn", "objective": objective})
        job = d.j("train", "--trainer", "lora", "--dataset", ds, "--expert", name, "--label", "letters", "--settings", st,
                  "--follow")
        check(job.get("state") == "done", f"lora ({objective}) job: {job}")
    ex = d.j("expert", "show", "lora-rl")
    meta = json.loads(ex["meta"])
    check(meta.get("kind") == "lora" and meta.get("rank") == 4 and meta.get("trainer") == "lora", f"lora meta {meta}")
    svf = d.j("expert", "show", "letters1")
    # 2 layers x (q 128x64 + k 64x64 + v 64x64 + o 64x128 -> rank 4 x (rows + cols)): many more than SVF's z
    check(ex["n_params"] > svf["n_params"], f"LoRA {ex['n_params']} vs SVF {svf['n_params']} parameters")
    g = d.j("generate", "--expert", "lora-rl", "--max-tokens", "4", "Write the letter a.")
    check(g["decision"]["mix"][0]["expert"] == "lora-rl", f"decision {g['decision']}")
    bad = d.t2("generate", "--mix", "lora-rl:0.5,letters1:0.5", "--max-tokens", "2", "x", check=False)
    check(bad.returncode != 0 and "LoRA" in bad.stderr, f"a mixture with a LoRA expert: exit {bad.returncode} {bad.stderr.strip()}")
    res = json.loads(d.j("eval", "--dataset", ds, "--expert", "lora-sft", "--limit", "3", "--follow")["result"])
    check(res["trained_params"] == d.j("expert", "show", "lora-sft")["n_params"], f"eval trained_params {res['trained_params']}")
    exp = os.path.join(ARGS.workdir, "lora-rl.safetensors")
    d.t2("expert", "export", "lora-rl", "-o", exp)
    d.t2("expert", "import", exp, "--name", "lora-copy")
    check(json.loads(d.j("expert", "show", "lora-copy")["meta"]).get("kind") == "lora", "imported LoRA kept its kind")
    return (f"LoRA trained by reinforce and sft as jobs ({ex['n_params']} parameters vs SVF's {svf['n_params']}), "
            f"served, evaluated, not mixable, export/import")


def t_seed(d):
    """A train job's "seed" seeds its random stream whatever its id: the LoRA trainer draws A from that stream
    first, so two jobs with one seed write the same A and another seed writes another."""
    ds = os.path.join(ARGS.workdir, "letters.jsonl")
    tensors = {}
    for name, seed in (("seed7a", 7), ("seed7b", 7), ("seed8", 8)):
        st = json.dumps({"steps": 1, "batch": 2, "max_tokens": 4, "eval_every": 0, "val_size": 1, "rank": 2, "alpha": 4,
                         "modules": "attn", "seed": seed})
        job = d.j("train", "--trainer", "lora", "--dataset", ds, "--expert", name, "--settings", st, "--follow")
        check(job.get("state") == "done", f"seed {seed} job: {job}")
        path = os.path.join(ARGS.workdir, name + ".safetensors")
        d.t2("expert", "export", name, "-o", path)
        raw = open(path, "rb").read()
        tensors[name] = raw[8 + int.from_bytes(raw[:8], "little"):]   # the tensor data after the JSON header
    check(len(tensors["seed7a"]) > 0 and tensors["seed7a"] == tensors["seed7b"], "two jobs with seed 7 trained different LoRAs")
    check(tensors["seed7a"] != tensors["seed8"], "seeds 7 and 8 trained the same LoRA")
    job = d.j("train", "--trainer", "reinforce", "--dataset", ds, "--expert", "seedbad", "--settings", '{"seed": "x"}',
              "--follow", check=False)
    check(job.get("state") == "failed" and "seed" in (job.get("error") or ""), f"a seed that is not an integer: {job}")
    return f"one seed, one LoRA ({len(tensors['seed7a'])} bytes) across job ids; another seed, another; a bad seed refused"


TESTS = [("info", t_info), ("generate", t_generate), ("concurrent", t_concurrent), ("malformed", t_malformed),
         ("plugins-refused", t_plugins_refused), ("jobs", t_jobs), ("restart", t_restart), ("tenants", t_tenants),
         ("sdk", t_sdk), ("two-pass", t_two_pass), ("cem", t_cem), ("lora", t_lora), ("seed", t_seed)]

MODEL = None


def main():
    global ARGS, MODEL
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for a in ("--t2", "--t2d", "--rawclient", "--plugins", "--bad-plugins", "--workdir"):
        ap.add_argument(a, required=True)
    ap.add_argument("--source-root")
    ap.add_argument("--build-root")
    ap.add_argument("--only")
    ARGS = ap.parse_args()
    os.makedirs(ARGS.workdir, exist_ok=True)
    MODEL = os.path.join(ARGS.workdir, "model")
    if not os.path.exists(os.path.join(MODEL, "tokenizer.json")):
        subprocess.run([sys.executable, os.path.join(HERE, "make_model.py"), "--out", MODEL], check=True, stdout=subprocess.DEVNULL)
    only = set(ARGS.only.split(",")) if ARGS.only else None
    local = Daemon("local", plugin_dirs=[ARGS.plugins, ARGS.bad_plugins])
    try:
        local.start()
    except Fail as e:
        print(f"FAIL start: {e}")
        return 1
    try:
        for name, fn in TESTS:
            if only and name not in only:
                continue
            t0 = time.time()
            try:
                arg = local
                note = fn(arg)
                print(f"ok   {name:16s} {time.time() - t0:6.1f} s  {note}", flush=True)
            except Exception as e:  # noqa: BLE001
                FAILED.append(name)
                detail = str(e) if isinstance(e, Fail) else traceback.format_exc()
                print(f"FAIL {name:16s} {detail}", flush=True)
                if local.proc.poll() is not None:
                    print("the daemon died; restarting it for the remaining tests\n" + local.log_tail(), flush=True)
                    local.start()
    finally:
        local.stop()
    # sanitizer builds: any report a daemon printed is a failure
    for root, _, files in os.walk(ARGS.workdir):
        for f in files:
            if f == "t2d.stderr":
                text = open(os.path.join(root, f), errors="replace").read()
                for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                    if marker in text:
                        FAILED.append("sanitizer")
                        print(f"FAIL sanitizer      {os.path.join(root, f)}: {marker}\n{text[text.index(marker):][:1500]}")
                        break
    print(f"{len(FAILED)} failed" if FAILED else "all passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())

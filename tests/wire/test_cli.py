#!/usr/bin/python3
"""The remote half of the t2 command line against fake_t2d (canned replies, no model), plus its offline
paths: argument checking, exit codes, `t2 keys new`, an unreachable daemon, the config file, Ctrl-C.

  test_cli.py --t2 PATH --fake PATH --workdir DIR

Prints "ok NAME" or "FAIL NAME: why" per check; exit 1 if any failed. Nothing depends on timing: waits
are bounded by generous subprocess timeouts only so that a hang fails instead of blocking the suite.
"""
import argparse
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

ARGS = None
FAILED = []


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def t2(*args, env=None, timeout=60, input=None):
    e = dict(os.environ)
    for k in ("T2_CONNECT", "T2_KEY", "T2_SERVER_KEY", "T2_CONFIG"):
        e.pop(k, None)
    e["T2_CONFIG"] = EMPTY_CONF   # never the machine's /etc/t2/t2d.conf
    e.update(env or {})
    if e.get("T2_CONFIG") is None:
        del e["T2_CONFIG"]
    return subprocess.run([ARGS.t2, *args], env=e, capture_output=True, text=True, timeout=timeout, input=input)


def expect(r, code, what, needle=None):
    check(r.returncode == code, f"{what}: exit {r.returncode}, want {code}; stderr {r.stderr.strip()[-400:]!r}")
    if needle is not None:
        check(needle in r.stderr or needle in r.stdout, f"{what}: {needle!r} not in {r.stderr.strip()[-400:]!r}")


def last_json(r):
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    check(lines, f"no JSON in {r.stdout[-300:]!r}")
    return json.loads(lines[-1])


def fake_log():
    with open(LOG) as f:
        return f.read().splitlines()


def last_log(prefix):
    lines = [ln for ln in fake_log() if ln.startswith(prefix)]
    check(lines, f"the fake daemon logged no {prefix!r}")
    return lines[-1]


# ---------------------------------------------------------------- offline

def t_help():
    r = t2("help")
    expect(r, 0, "help")
    for s in ("t2 generate", "t2 keys new", "t2 model expert new", "3 cannot reach the daemon", "5 denied"):
        check(s in r.stdout, f"help lacks {s!r}")
    expect(t2(), 2, "no command")
    expect(t2("bogus"), 2, "unknown command", "unknown command")
    expect(t2("job"), 2, "job without subcommand")
    expect(t2("model", "expert", "frobnicate"), 2, "model expert frobnicate", "want show, mix or new")
    expect(t2("model", "expert", "show"), 2, "model expert show without FILE", "FILE is required")
    bad = os.path.join(ARGS.workdir, "not-an-expert.safetensors")
    with open(bad, "wb") as f:
        f.write(b"\x00" * 20)
    expect(t2("model", "expert", "show", bad), 1, "model expert show of junk")


def t_usage():
    c = ["--connect", "ipc://" + os.path.join(ARGS.workdir, "nobody.sock")]
    cases = [
        (["generate", *c], "no prompt"),
        (["generate", *c, "--expert", "a", "--mix", "b:1", "hi"], "exclude each other"),
        (["generate", *c, "--base", "--dispatch", "cem", "hi"], "exclude each other"),
        (["generate", *c, "--temperature", "-1", "hi"], "--temperature"),
        (["generate", *c, "--top-p", "2", "hi"], "--top-p"),
        (["generate", *c, "--mix", "a:x", "hi"], "NAME:WEIGHT"),
        (["generate", *c, "--mix", "a:nan", "hi"], "NAME:WEIGHT"),
        (["generate", *c, "--expert", "../x", "hi"], "not a valid name"),
        (["generate", *c, "--raw", "--system", "s", "hi"], "--system"),
        (["generate", *c, "--frobnicate", "hi"], "unknown option"),
        (["generate", *c] + sum([["--stop", str(i)] for i in range(17)], []) + ["hi"], "--stop"),
        (["train", *c, "--trainer", "r"], "are required"),
        (["train", *c, "--trainer", "r", "--dataset", "d", "--expert", "e", "--set", "novalue"], "key=value"),
        (["train", *c, "--trainer", "r", "--dataset", "d", "--expert", "e", "--settings", "[1]"], "JSON object"),
        (["train", *c, "--trainer", "r", "--dataset", "d", "--expert", "e", "--settings", "{}", "--set", "a=1"], "not both"),
        (["eval", *c], "--dataset"),
        (["eval", *c, "--dataset", "d", "--expert", "a", "--dispatch", "b"], "exclude each other"),
        (["jobs", *c, "--state", "sleeping"], "job_list.state"),
        (["jobs", *c, "--limit", "x"], "--limit"),
        (["job", "show", *c], "job ID"),
        (["job", "show", *c, "abc"], "not a job id"),
        (["job", "show", *c, "0"], "not a job id"),
        (["job", "cancel", *c, "1", "2"], "exactly one"),
        (["expert", "show", *c], "expert NAME"),
        (["expert", "rm", *c, ".hidden"], "not a valid name"),
        (["expert", "import", *c, os.path.join(ARGS.workdir, "missing.safetensors")], "cannot open"),
        (["info", *c, "--timeout", "0"], "--timeout"),
        (["info", *c, "extra"], "unknown option or argument"),
        (["info", "--connect", "http://x"], "tcp://"),
        (["info", "--connect", "ipc:///x", "--key", "/nonexistent.key"], "server-key"),
        (["info", "--connect", "ipc:///x", "--key", "/nonexistent.key", "--server-key", "/nonexistent.pub"], "/nonexistent"),
        (["info"], "no daemon address"),
        (["info", "--json"], "no daemon address"),
        (["info", "--config", os.path.join(ARGS.workdir, "missing.conf")], "cannot open config file"),
    ]
    for args, needle in cases:
        expect(t2(*args), 2, "t2 " + " ".join(args[:2]) + " ... " + needle, needle)
    return f"{len(cases)} usage errors"


def t_keys():
    d = os.path.join(ARGS.workdir, "keys")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    r = t2("keys", "new", "alice", "--dir", d)
    expect(r, 0, "keys new")
    pub = r.stdout.strip()
    check(len(pub) == 40, f"printed public key {pub!r}")
    key, pubf = os.path.join(d, "alice.key"), os.path.join(d, "alice.pub")
    check(stat.S_IMODE(os.stat(key).st_mode) == 0o600, "the .key is not mode 0600")
    with open(pubf) as f:
        text = f.read()
    check(f"public = {pub}" in text and "secret" not in text, f".pub content {text!r}")
    with open(key) as f:
        text = f.read()
    check(f"public = {pub}" in text and "secret = " in text, ".key content")
    expect(t2("keys", "new", "alice", "--dir", d), 1, "keys new over an existing key", "exists")
    r2 = t2("keys", "new", "alice", "--dir", d, "--force", "--json")
    expect(r2, 0, "keys new --force")
    j = last_json(r2)
    check(j["public"] != pub and j["key_file"] == key, f"--force --json {j}")
    expect(t2("keys", "new", "../evil", "--dir", d), 2, "keys new with a path", "not a valid key name")
    expect(t2("keys", "new", "x", "--dir", os.path.join(d, "nope")), 2, "keys new into a missing folder", "not a folder")
    expect(t2("keys", "new"), 2, "keys new without NAME")


def t_unreachable():
    sock = os.path.join(ARGS.workdir, "nobody.sock")
    t0 = time.time()
    r = t2("ping", "--connect", "ipc://" + sock, "--timeout", "0.5", timeout=30)
    expect(r, 3, "ping to nobody", "cannot reach the daemon")
    check(sock in r.stderr, "the message does not name the endpoint")
    r = t2("info", "--json", "--timeout", "0.3", env={"T2_CONNECT": "tcp://127.0.0.1:1"}, timeout=30)
    expect(r, 3, "info to a closed port")
    check(last_json(r)["error"]["code"] == "unreachable", f"json error {r.stdout!r}")
    r = t2("generate", "--connect", "ipc://" + sock, "--timeout", "0.3", "hello", timeout=30)
    expect(r, 3, "generate to nobody")
    return f"exit 3 in {time.time() - t0:.1f} s for three commands"


# ---------------------------------------------------------------- against the fake daemon

def t_config():
    conf = os.path.join(ARGS.workdir, "t2d.conf")
    with open(conf, "w") as f:
        f.write(f"[daemon]\nlisten = {EP}\nmodel = /nowhere\n; a comment\n[engine]\nthreads = 2\n")
    expect(t2("ping", env={"T2_CONFIG": conf}), 0, "endpoint from [daemon] listen")
    expect(t2("ping", "--config", conf, env={"T2_CONFIG": None}), 0, "--config")
    with open(conf, "w") as f:
        f.write(f"[daemon]\nlisten = tcp://127.0.0.1:1\n[client]\nconnect = {EP}\n")
    expect(t2("ping", env={"T2_CONFIG": conf}), 0, "[client] connect before [daemon] listen")
    with open(conf, "w") as f:
        f.write("[client]\nconnect = ipc:///nonexistent/sock\n")
    expect(t2("ping", env={"T2_CONFIG": conf, "T2_CONNECT": EP}), 0, "T2_CONNECT before the config file")
    expect(t2("ping", "--connect", EP, env={"T2_CONFIG": conf, "T2_CONNECT": "ipc:///nonexistent/x"}), 0,
           "--connect before T2_CONNECT")
    with open(conf, "w") as f:
        f.write("this is not ini\n")
    expect(t2("ping", env={"T2_CONFIG": conf}), 2, "a broken config file", "line 1")


def t_info():
    E = {"T2_CONNECT": EP}
    r = t2("info", env=E)
    expect(r, 0, "info")
    check("tester" in r.stdout and "llama" in r.stdout, f"info output {r.stdout!r}")
    j = last_json(t2("info", "--json", env=E))
    check(j["tenant"] == "tester" and j["n_matrices"] == 6 and j["protocol_version"] == 100, f"info json {j}")
    j = last_json(t2("plugins", "--json", env=E))
    check(j["plugins"][0]["name"] == "fixed" and "ABI" in j["refused"][0], f"plugins json {j}")
    r = t2("plugins", env=E)
    check("refused: bad.so" in r.stdout, f"plugins output {r.stdout!r}")
    j = last_json(t2("stats", "--json", env=E))
    check(j["batches"] == 4 and j["mean_batch_rows"] == 2.5, f"stats {j}")
    check("1h02m" in t2("stats", env=E).stdout, "stats uptime")
    r = t2("ping", "--count", "3", env=E)
    expect(r, 0, "ping")
    check(r.stdout.count("pong from") == 3, f"ping output {r.stdout!r}")
    check("ms" in last_json(t2("ping", "--json", env=E)), "ping json")


def t_generate():
    E = {"T2_CONNECT": EP}
    r = t2("generate", "What", "is", "2+2?", env=E)
    expect(r, 0, "generate")
    check(r.stdout == "Hello, world\n", f"streamed text {r.stdout!r}")
    check("dispatch prompt -> math" in r.stderr and "first pass 0.25 s" in r.stderr, f"decision {r.stderr!r}")
    log = last_log("generate")
    check("stream=1" in log and "roles=user" in log and "user=What is 2+2?" in log, log)
    j = last_json(t2("generate", "--json", "hi", env=E))
    check(j["text"] == "Hello, world" and j["decision"]["mix"][0]["expert"] == "math" and j["stop"] == "eos", f"{j}")
    check("stream=0" in last_log("generate"), "--json should not stream")
    r = t2("generate", "--no-stream", "hi", env=E)
    check(r.stdout == "Hello, world\n" and "stream=0" in last_log("generate"), f"--no-stream {r.stdout!r}")
    expect(t2("generate", "--system", "Be brief.", "--max-tokens", "9", "--temperature", "0.5", "--top-p", "0.9",
              "--top-k", "7", "--seed", "3", "--stop", "x", "--stop", "y", "--mix", "math:0.25", "--task-id", "t1",
              "--dispatch-settings", '{"a":1}', "hi", env=E), 0, "generate with every option")
    log = last_log("generate")
    for s in ("roles=system,user", "max_tokens=9", "temperature=0.5", "top_p=0.9", "top_k=7", "seed=3", "stops=2",
              "mix=math:0.25", "task_id=t1", 'settings={"a":1}'):
        check(s in log, f"{s} not in {log}")
    expect(t2("generate", "--raw", "--base", "abc", env=E), 0, "generate --raw --base")
    log = last_log("generate")
    check("prompt=abc" in log and "roles= " in log and "base=1" in log, log)
    expect(t2("generate", "--expert", "math", "hi", env=E), 0, "generate --expert")
    check("mix=math:1" in last_log("generate"), "--expert is a mixture of one with alpha 1")
    expect(t2("generate", "--dispatch", "cem", "--examples", "/d/few.jsonl", "hi", env=E), 0, "generate --dispatch")
    check("dispatch=cem" in last_log("generate"), "dispatch")
    r = t2("generate", env=E, input="from stdin\n")
    expect(r, 0, "generate from stdin")
    check("user=from stdin" in last_log("generate"), "stdin prompt")
    r = t2("generate", "--expert", "nope", "hi", env=E)
    expect(r, 4, "generate with a missing expert", "not found")
    r = t2("generate", "--expert", "nope", "--json", "hi", env=E)
    check(last_json(r)["error"]["code"] == "not found", f"json error {r.stdout!r}")


def t_interrupt():
    e = dict(os.environ, T2_CONNECT=EP, T2_CONFIG=EMPTY_CONF)
    p = subprocess.Popen([ARGS.t2, "generate", "hang"], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = b""
    while b"partial" not in got:     # the first chunk arrived: the stream is open
        b = p.stdout.read(1)
        check(b, "generate ended before the first chunk")
        got += b
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        raise Fail("generate did not exit after Ctrl-C")
    check(p.returncode == 130, f"exit {p.returncode} after Ctrl-C: {err!r}")
    gen_id = None
    cancels = [ln for ln in fake_log() if ln.startswith("cancel ")]
    check(cancels, "no Cancel reached the daemon")
    gen_id = int(cancels[-1].split()[1])
    check(gen_id > 0, "Cancel names the stream")


def t_jobs():
    E = {"T2_CONNECT": EP}
    r = t2("train", "--trainer", "reinforce", "--dataset", "letters.jsonl", "--expert", "letters1", "--label", "letters",
           "--set", "steps=3", "--set", "lr=0.002", "--set", "name=abc", "--set", "flags=[1,2]", "--priority", "5", env=E)
    expect(r, 0, "train")
    check(r.stdout.strip() == "7", f"train prints the id: {r.stdout!r}")
    log = last_log("submit")
    check("kind=train trainer=reinforce" in log and "expert=letters1 label=letters" in log and "priority=5" in log, log)
    settings = json.loads(log.split("settings=")[1].split(" dispatch=")[0])
    check(settings == {"steps": 3, "lr": 0.002, "name": "abc", "flags": [1, 2]}, f"settings {settings}")
    r = t2("train", "--trainer", "reinforce", "--dataset", "d", "--expert", "e", "--settings", '{"steps": 4}', "--follow", env=E)
    expect(r, 0, "train --follow")
    check("step 3/3" in r.stdout and "done" in r.stdout and "accuracy 0.75" in r.stdout, f"follow output {r.stdout!r}")
    r = t2("train", "--trainer", "reinforce", "--dataset", "d", "--expert", "e", "--follow", "--json", env=E)
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    check(lines[0]["id"] == 7 and lines[0]["state"] == "queued", f"first json line {lines[0]}")
    check([e["type"] for e in lines[1:-1]] == ["progress"] * 3 + ["done"], f"events {lines[1:-1]}")
    check(lines[-1]["state"] == "done" and lines[-1]["reward"] == 0.5, f"last line {lines[-1]}")
    r = t2("train", "--trainer", "reinforce", "--dataset", "fail", "--expert", "e", "--follow", env=E)
    expect(r, 1, "a failing job", "grader crashed")
    expect(t2("train", "--trainer", "nosuch", "--dataset", "d", "--expert", "e", env=E), 4, "unknown trainer", "nosuch")
    expect(t2("train", "--trainer", "r", "--dataset", "quota", "--expert", "e", env=E), 5, "over quota", "quota")
    r = t2("eval", "--dataset", "d", "--mix", "math:0.5,other:0.5", "--limit", "4", "--split", "test", "--follow", env=E)
    expect(r, 0, "eval --follow")
    check("accuracy 0.7500" in r.stdout, f"eval output {r.stdout!r}")
    log = last_log("submit")
    check("kind=eval" in log and "mix=math:0.5,other:0.5" in log and "limit=4" in log and "split=test" in log, log)
    j = last_json(t2("jobs", "--json", "--state", "done", "--limit", "5", env=E))
    check([x["id"] for x in j["jobs"]] == [7, 8], f"jobs {j}")
    check("state=done limit=5" in last_log("jobs"), "jobs options")
    r = t2("jobs", env=E)
    check("letters.jsonl -> letters1" in r.stdout, f"jobs table {r.stdout!r}")
    j = last_json(t2("job", "show", "8", "--json", env=E))
    check(json.loads(j["result"])["accuracy"] == 0.75, f"job show {j}")
    r = t2("job", "show", "9", env=E)
    check("grader crashed" in r.stdout, f"job show human {r.stdout!r}")
    expect(t2("job", "show", "99", env=E), 4, "a missing job")
    r = t2("job", "cancel", "7", env=E)
    check(r.stdout.strip() == "job 7 cancelled", f"cancel {r.stdout!r}")
    j = last_json(t2("job", "log", "7", "--json", env=E))
    check([e["type"] for e in j["events"]] == ["queued", "done"], f"log {j}")
    r = t2("job", "watch", "7", env=E)
    expect(r, 0, "job watch")
    check(r.stdout.count("progress") == 3, f"watch {r.stdout!r}")


def t_progress_bar():
    """On a terminal --follow draws one live line (carriage return, erase line, a bar) per progress event."""
    import pty
    master, slave = pty.openpty()
    e = dict(os.environ, T2_CONNECT=EP, T2_CONFIG=EMPTY_CONF)
    p = subprocess.Popen([ARGS.t2, "train", "--trainer", "r", "--dataset", "d", "--expert", "e", "--follow"], env=e,
                         stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    while True:
        try:
            b = os.read(master, 4096)
        except OSError:   # EIO: the child closed the terminal
            break
        if not b:
            break
        out += b
    os.close(master)
    check(p.wait(timeout=60) == 0, f"train --follow on a tty: exit {p.returncode}")
    text = out.decode(errors="replace")
    check(text.count("\r\x1b[K") >= 3, f"no live line: {text!r}")
    check("[" + "#" * 5 in text and "3/3 100%" in text and "reward 0.300 acc 0.750" in text, f"bar {text!r}")
    check("step 1/3" not in text, "progress events should not be printed as lines on a tty")


def t_experts():
    E = {"T2_CONNECT": EP}
    j = last_json(t2("experts", "--json", env=E))
    check([e["name"] for e in j["experts"]] == ["math"], f"experts {j}")
    j = last_json(t2("experts", "--all", "--json", env=E))
    check([e["owner"] for e in j["experts"]] == ["tester", "bob"], f"experts --all {j}")
    r = t2("expert", "show", "math", env=E)
    check("parameters 192" in r.stdout and '"trainer": "reinforce"' in r.stdout, f"show {r.stdout!r}")
    expect(t2("expert", "show", "secret", env=E), 5, "another tenant's expert", "denied")
    expect(t2("expert", "show", "nope", env=E), 4, "a missing expert")
    out = os.path.join(ARGS.workdir, "math.safetensors")
    r = t2("expert", "export", "math", "-o", out, env=E)
    expect(r, 0, "export")
    with open(out, "rb") as f:
        data = f.read()
    check(data == bytes((i * 7) & 0xff for i in range(1000)), "exported bytes differ")
    r = subprocess.run([ARGS.t2, "expert", "export", "math", "-o", "-"], env=dict(os.environ, T2_CONNECT=EP),
                       capture_output=True, timeout=60)
    check(r.stdout == data, "export to stdout")
    expect(t2("expert", "export", "secret", "-o", out, env=E), 5, "export another tenant's expert")
    with open(out, "rb") as f:
        check(f.read() == data, "a failed export touched the file")
    r = t2("expert", "import", out, "--label", "arith", "--json", env=E)
    expect(r, 0, "import")
    check(last_json(r)["bytes"] == 1000, "import reply")
    check(last_log("import") == f"import name=math label=arith bytes=1000 sum={sum(data)}", last_log("import"))
    expect(t2("expert", "import", out, "--name", "other", env=E), 0, "import --name")
    check(last_log("import").startswith("import name=other "), "import --name")
    expect(t2("expert", "publish", "math", env=E), 0, "publish")
    check(last_log("publish") == "publish math 1", "publish")
    expect(t2("expert", "publish", "math", "--withdraw", env=E), 0, "withdraw")
    check(last_log("publish") == "publish math 0", "withdraw")
    r = t2("expert", "rm", "math", env=E)
    check(r.returncode == 0 and "deleted math" in r.stdout, f"rm {r.stdout!r}")
    expect(t2("expert", "rm", "secret", env=E), 5, "rm another tenant's expert")


TESTS = [("help", t_help), ("usage", t_usage), ("keys", t_keys), ("unreachable", t_unreachable),
         ("config", t_config), ("info", t_info), ("generate", t_generate), ("interrupt", t_interrupt),
         ("jobs", t_jobs), ("progress-bar", t_progress_bar), ("experts", t_experts)]
EP = LOG = EMPTY_CONF = None


def main():
    global ARGS, EP, LOG, EMPTY_CONF
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for a in ("--t2", "--fake", "--workdir"):
        ap.add_argument(a, required=True)
    ARGS = ap.parse_args()
    shutil.rmtree(ARGS.workdir, ignore_errors=True)
    os.makedirs(ARGS.workdir)
    EP = "ipc://" + os.path.join(ARGS.workdir, "fake.sock")
    LOG = os.path.join(ARGS.workdir, "fake.log")
    EMPTY_CONF = os.path.join(ARGS.workdir, "empty.conf")
    open(EMPTY_CONF, "w").close()
    fake = subprocess.Popen([ARGS.fake, EP, LOG], stderr=subprocess.PIPE)
    try:
        for name, fn in TESTS:
            try:
                note = fn()
                print(f"ok   {name:12s} {note or ''}", flush=True)
            except Exception as e:  # noqa: BLE001
                FAILED.append(name)
                print(f"FAIL {name:12s} {e}", flush=True)
    finally:
        fake.kill()
        fake.wait()
    print(f"{len(FAILED)} failed" if FAILED else "all passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())

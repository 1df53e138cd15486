"""What the reference harnesses (check_vs_torch.py, check_svf.py, check_grad.py) share: running the
t2 binary, counting and printing one line per check, the command line and the work folder.

Standard library only, so that a harness can import it before torch and still exit 77 (meson's skip
code) with its own message when torch is missing.  The harnesses run as scripts from this folder,
which Python puts first on sys.path, so a plain `import harness` finds this file.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time


class Failure(Exception):
    """A check failed; the message says how (reported as a FAIL line by Checker.attempt)."""


class Result:
    """Counts checks and prints one line per check: `STATUS what detail`, `what` padded to `width`.

    PASS, FAIL and SKIP are counted; INFO lines are printed only; any other status counts as a
    failure (a harness bug must not pass unnoticed)."""

    def __init__(self, width):
        self.width = width
        self.passed = self.failed = self.skipped = 0

    def report(self, status, what, detail):
        if status == "PASS":
            self.passed += 1
        elif status == "SKIP":
            self.skipped += 1
        elif status != "INFO":
            self.failed += 1
        print("%-4s %-*s %s" % (status, self.width, what, detail), flush=True)

    def summary(self):
        """The last line: `P passed, F failed`, with `, S skipped` only when something was skipped."""
        s = "%d passed, %d failed" % (self.passed, self.failed)
        if self.skipped:
            s += ", %d skipped" % self.skipped
        return s


def tail(s, n=400):
    """The end of a program's output on one line, at most n characters (then led by ...)."""
    s = s.strip().replace("\n", " | ")
    return s if len(s) <= n else "..." + s[-n:]


def run_t2(t2, args, timeout, env=None):
    """Run `t2 args...` (env None: this process's environment); returns (returncode, stdout, stderr,
    seconds), returncode None when it timed out."""
    t0 = time.time()
    try:
        p = subprocess.run([t2] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, universal_newlines=True, env=env)
    except subprocess.TimeoutExpired:
        return None, "", "timed out after %ss" % timeout, time.time() - t0
    return p.returncode, p.stdout, p.stderr, time.time() - t0


class Runner:
    """Runs the t2 binary with T2_CACHE_DIR pointing into the work folder; counts the runs (calls)
    and the time they took (seconds)."""

    def __init__(self, t2, workdir, timeout):
        self.t2 = t2
        self.timeout = timeout
        self.env = dict(os.environ)
        self.env["T2_CACHE_DIR"] = os.path.join(workdir, "cache")
        self.calls = 0
        self.seconds = 0.0

    def run(self, args):
        self.calls += 1
        rc, out, err, secs = run_t2(self.t2, args, self.timeout, self.env)
        self.seconds += secs
        return rc, out, err, secs

    def ok(self, args):
        """Run and require exit 0 (else Failure); returns (stdout, stderr)."""
        rc, out, err, _ = self.run(args)
        if rc != 0:
            raise Failure("t2 %s exited %s: %s" % (" ".join(args[:2]), rc, tail(err or out)))
        return out, err


class Checker:
    """The base of a harness's checks: a Runner, a Result and numbered files in WORKDIR/files."""

    def __init__(self, runner, res, workdir):
        self.r = runner
        self.res = res
        self.workdir = workdir
        self.n_file = 0

    def path(self, stem, ext=".safetensors"):
        """A new file name in WORKDIR/files (numbered, never reused in a run)."""
        self.n_file += 1
        return os.path.join(self.workdir, "files", "%s-%d%s" % (stem, self.n_file, ext))

    def attempt(self, what, fn):
        """fn(); a Failure or any other exception is reported as a FAIL line for `what` (the checks
        go on); returns fn's value, or None after a failure."""
        try:
            return fn()
        except Failure as e:
            self.res.report("FAIL", what, str(e))
        except Exception as e:  # noqa: BLE001 - a harness error is a failure, keep going
            self.res.report("FAIL", what, "%s: %s" % (type(e).__name__, e))
        return None


def parse_json_output(out):
    """The JSON object t2 printed: the whole output, or else its last line starting with `{`."""
    out = out.strip()
    try:
        return json.loads(out)
    except ValueError:
        pass
    for line in reversed(out.splitlines()):  # tolerate chatter before the object
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON object in output")


def skip_without_torch(prog, error):
    """Exit 77 (meson's skip code) for a harness whose PyTorch reference failed to import."""
    print("%s: SKIP: PyTorch reference unavailable (%s); run with /usr/bin/python3 "
          "and Debian's python3-torch / python3-numpy installed" % (prog, error))
    sys.exit(77)


def parse_args(doc, workdir_help, only_help):
    """The harnesses' common command line: --t2, --workdir, --only, --timeout, -v."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--t2", required=True, help="path to the t2 binary")
    ap.add_argument("--workdir", required=True, help=workdir_help)
    ap.add_argument("--only", default=None, help=only_help)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per t2 invocation")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap.parse_args()


def t2_binary(prog, path):
    """The absolute path of the t2 binary, or None (after saying why) when it is not executable."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        print("%s: %s is not an executable file" % (prog, path))
        return None
    return os.path.abspath(path)


def fresh_workdir(workdir):
    """Empty WORKDIR/cache and WORKDIR/files: a cache left by an older t2 must not hide a build bug."""
    for sub in ("cache", "files"):
        shutil.rmtree(os.path.join(workdir, sub), ignore_errors=True)
    os.makedirs(os.path.join(workdir, "files"), exist_ok=True)


class Session:
    """A harness run: its arguments, the t2 binary, a fresh work folder, the Result and the Runner.
    t2 is None when the binary is missing (the harness then exits 2)."""

    def __init__(self, prog, doc, workdir_help, only_help, width):
        self.args = parse_args(doc, workdir_help, only_help)
        self.t2 = t2_binary(prog, self.args.t2)
        self.workdir = os.path.abspath(self.args.workdir)
        self.t_start = time.time()
        self.res = Result(width)
        if self.t2 is not None:
            fresh_workdir(self.workdir)  # fresh caches and files every run
            self.runner = Runner(self.t2, self.workdir, self.args.timeout)

    def finish(self, worst, width):
        """Print the worst ratio of each kind (INFO lines), the timing with -v and the summary; the exit code."""
        for kind, (ratio, where) in sorted(worst.items()):
            print("INFO worst %-*s %.2e at %s" % (width, kind, ratio, where))
        if self.args.verbose:
            print("(%.1fs, %d t2 runs taking %.1fs)" % (time.time() - self.t_start, self.runner.calls, self.runner.seconds))
        print(self.res.summary())
        return 0 if self.res.failed == 0 else 1

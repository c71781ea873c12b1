"""The fork-server template (template.py) against a real template process and real forked workers."""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from harness import PKG_DIR, pack  # noqa: F401
import harness

from analytics_worker import template


def _wait(cond, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.01)
    raise AssertionError("timed out waiting for " + what)


def _gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return True


class TemplateSide:
    """Plays the engine: a listening worker socket + a template process driven over stdin/stdout."""

    def __init__(self, engine_pid=None, env=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="aw-tpl-")
        self.path = os.path.join(self.tmp.name, "workers.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(8)
        self.listener.settimeout(60)
        e = dict(os.environ)
        e["PYTHONPATH"] = PKG_DIR + os.pathsep + e.get("PYTHONPATH", "")
        if env:
            e.update(env)
        cmd = [sys.executable, "-m", "analytics_worker", "--template", "--socket", self.path,
               "--enable-test-algorithms", "--engine-pid", str(engine_pid or os.getpid())]
        self.proc = subprocess.Popen(cmd, env=e, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.stderr_lines = []
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._err.start()
        self.events = []

    def _read_err(self):
        for raw in self.proc.stderr:
            self.stderr_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def event(self, timeout=60.0):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert r, "no event from the template within %s s (stderr: %s)" % (timeout, self.stderr_lines[-5:])
        line = self.proc.stdout.readline()
        assert line, "template closed its control channel (stderr: %s)" % self.stderr_lines[-5:]
        ev = json.loads(line)
        self.events.append(ev)
        return ev

    def exit_report(self, pid, timeout=30.0):
        prefix = "\x1fX%d\x1f" % pid
        line = _wait(lambda: next((l for l in self.stderr_lines if l.startswith(prefix)), None), timeout,
                     "exit report of pid %d" % pid)
        return line[len(prefix):]

    def fork(self, worker_id, token):
        self.proc.stdin.write((json.dumps({"op": "fork", "worker_id": worker_id, "token": token,
                                           "env": {"AW_TEST_ENV": "x%d" % worker_id}}) + "\n").encode())
        self.proc.stdin.flush()
        ev = self.event()
        assert ev["event"] == "forked", ev
        conn, _ = self.listener.accept()
        conn.settimeout(60)
        w = harness.EngineSide.__new__(harness.EngineSide)
        w.conn, w.timeout = conn, 60
        w.hello = w.recv()
        return ev, w

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.listener.close()
        self.tmp.cleanup()


@pytest.fixture
def tpl():
    t = TemplateSide()
    try:
        ready = t.event()
        assert ready["event"] == "ready" and ready["pid"] == t.proc.pid
        yield t
    finally:
        t.close()


def test_forked_workers_are_full_workers(tpl):
    ev1, w1 = tpl.fork(1, "tok-1")
    ev2, w2 = tpl.fork(2, "tok-2")
    assert ev1["tasks"] == 1 and ev2["tasks"] == 1  # single-threaded at each fork
    assert w1.hello["token"] == "tok-1" and w1.hello["pid"] == ev1["pid"] and w1.hello["worker_id"] == 1
    assert w2.hello["token"] == "tok-2" and w2.hello["pid"] == ev2["pid"]
    assert "kmeans" in w1.hello["algorithms"] and "_test_random" in w1.hello["algorithms"]
    r = w1.request("mean", [1.0, 2.0, 3.0])
    assert r["ok"] and r["result_json"] == "2.0"
    # the title goes back to idle right after the response is sent: await it
    _wait(lambda: open("/proc/%d/cmdline" % ev1["pid"], "rb").read().startswith(b"analytics-worker[1] idle"),
          what="idle title of the forked worker")
    # every child reseeds after the fork: otherwise all would replay the template's random streams
    a = json.loads(w1.request("_test_random", [])["result_json"])
    b = json.loads(w2.request("_test_random", [])["result_json"])
    assert a["pid"] != b["pid"]
    assert a["random"] != b["random"], "two forked workers replay the same random stream"
    assert a["numpy"] != b["numpy"], "two forked workers replay the same numpy stream"
    # each child's log lines reach the template's stderr pipe tagged with the child's pid
    w1.send({"type": "shutdown"})
    assert tpl.exit_report(ev1["pid"]) == "exited with status 0"
    # each child's log lines reach the template's stderr pipe tagged with its pid, before its exit report
    tag = template.TAG % (ev1["pid"], "stderr")
    lines = [l for l in tpl.stderr_lines if l.startswith(tag) or l.startswith("\x1fX%d\x1f" % ev1["pid"])]
    assert "shutdown requested" in lines[-2] and lines[-1].startswith("\x1fX")


def test_template_reports_sigkill_of_a_worker(tpl):
    ev, w = tpl.fork(3, "tok-3")
    os.kill(ev["pid"], signal.SIGKILL)
    assert tpl.exit_report(ev["pid"]) == "was killed by signal 9"


def test_worker_sigterm_finishes_request_and_waits_for_shutdown(tpl):
    ev, w = tpl.fork(4, "tok-4")
    w.send({"type": "request", "id": "s1", "algorithm": "_test_sleep", "params": {"seconds": "0.5"},
            "data": b"", "timeout_ms": 10000})
    _wait(lambda: open("/proc/%d/cmdline" % ev["pid"], "rb").read().startswith(b"analytics-worker[4] busy"),
          what="busy title")
    os.kill(ev["pid"], signal.SIGTERM)
    r = w.recv()
    assert r["id"] == "s1" and r["ok"], r
    assert w.ping("p1")["type"] == "pong"  # still serving the engine after SIGTERM
    w.send({"type": "shutdown"})
    assert tpl.exit_report(ev["pid"]) == "exited with status 0"


def test_worker_exits_when_the_engine_dies_even_if_its_socket_stays_open():
    fake_engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    t = TemplateSide(engine_pid=fake_engine.pid)
    try:
        assert t.event()["event"] == "ready"
        ev, w = t.fork(5, "tok-5")
        fake_engine.kill()
        fake_engine.wait(10)
        assert t.exit_report(ev["pid"]) == "exited with status %d" % template.EXIT_ENGINE_GONE
    finally:
        if fake_engine.poll() is None:
            fake_engine.kill()
        t.close()


def _sig_blocked(pid, tid):
    with open("/proc/%d/task/%d/status" % (pid, tid)) as f:
        return int([line.split()[1] for line in f if line.startswith("SigBlk:")][0], 16)


def test_engine_watch_thread_blocks_signals_so_sigio_reaches_the_main_thread(tpl):
    """A SIGIO delivered to the watch thread interrupted its select, which then took the GIL from the request being
    computed; the main thread must be the only one that can receive it (bench/README.md, toll round 4)."""
    ev, w = tpl.fork(6, "tok-6")
    pid = ev["pid"]
    others = _wait(lambda: [int(t) for t in os.listdir("/proc/%d/task" % pid) if int(t) != pid], what="watch thread")
    assert len(others) == 1, others
    bit = 1 << (int(signal.SIGIO) - 1)
    _wait(lambda: _sig_blocked(pid, others[0]) & bit, what="SIGIO blocked in the watch thread")
    assert not _sig_blocked(pid, pid) & bit, "SIGIO blocked in the main thread"
    w.send({"type": "request", "id": "r1", "algorithm": "_test_echo", "params": {}, "data": harness.f64([1.0, 2.0]),
            "timeout_ms": 10000})
    assert w.recv()["ok"]


def test_workers_outlive_a_killed_template_and_serve(tpl):
    ev, w = tpl.fork(6, "tok-6")
    tpl.proc.kill()
    tpl.proc.wait(10)
    r = w.request("mean", [2.0, 4.0])
    assert r["ok"] and r["result_json"] == "3.0"
    w.send({"type": "shutdown"})
    _wait(lambda: _gone(ev["pid"]), what="orphaned worker to exit on shutdown")


def test_eof_on_control_channel_ends_template_after_its_workers(tpl):
    ev, w = tpl.fork(7, "tok-7")
    tpl.proc.stdin.close()
    assert w.request("count", [1.0])["ok"]
    assert tpl.proc.poll() is None  # still reaping for its worker
    w.send({"type": "shutdown"})
    assert tpl.proc.wait(20) == 0
    assert tpl.exit_report(ev["pid"]) == "exited with status 0"


def test_fork_refused_while_another_thread_runs():
    stop = threading.Event()
    th = threading.Thread(target=stop.wait, name="intruder")
    th.start()
    try:
        n, why = template.check_single_threaded()
        assert n >= 2 and "refusing to fork" in why and "intruder" in why
    finally:
        stop.set()
        th.join()


def test_template_that_cannot_import_exits_with_a_clear_message(tmp_path):
    broken = tmp_path / "sklearn"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('simulated broken scikit-learn')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + PKG_DIR)
    p = subprocess.run([sys.executable, "-m", "analytics_worker", "--template", "--socket", "/nonexistent.sock"],
                       env=env, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == template.EXIT_IMPORT
    assert b"cannot import the worker libraries" in p.stderr and b"simulated broken scikit-learn" in p.stderr


def test_template_survives_sigterm_and_still_forks(tpl):
    tpl.proc.send_signal(signal.SIGTERM)
    ev, w = tpl.fork(8, "tok-8")
    assert w.request("count", [1.0, 2.0])["ok"]
    _wait(lambda: any("SIGTERM ignored" in l for l in tpl.stderr_lines), what="SIGTERM log line")
    assert tpl.proc.poll() is None


# ------------------------------------------------------------------ releasing the libraries' clean pages

def _mapping(header, rss=8, anonymous=0, private_dirty=0, shared_dirty=0, swap=0, vmflags="rd mr mw me",
             omit=()):
    fields = [("Size", 8), ("Rss", rss), ("Pss", rss), ("Shared_Clean", 0), ("Shared_Dirty", shared_dirty),
              ("Private_Clean", rss), ("Private_Dirty", private_dirty), ("Anonymous", anonymous),
              ("Swap", swap), ("SwapPss", swap), ("Locked", 0)]
    lines = [header] + ["%-16s%8d kB" % (k + ":", v) for k, v in fields if k not in omit]
    lines.append("THPeligible:    0")
    lines.append("VmFlags: " + vmflags + " ")
    return "\n".join(lines) + "\n"


SAMPLE_SMAPS = "".join([
    _mapping("7f0000000000-7f0000002000 r--p 00000000 fe:00 101      /usr/lib/libkeep.so.1"),
    _mapping("7f0000002000-7f0000008000 r-xp 00002000 fe:00 101      /usr/lib/libkeep.so.1",
             vmflags="rd ex mr mw me"),
    _mapping("7f0000010000-7f0000012000 r--p 00000000 fe:00 102      /opt/my libs/with space.so"),
    # RELRO: relocated while writable, then made read-only: its pages are private anonymous copies
    _mapping("7f0000020000-7f0000022000 r--p 0001f000 fe:00 101      /usr/lib/libkeep.so.1", anonymous=8,
             private_dirty=8),
    _mapping("7f0000030000-7f0000031000 r--p 00000000 fe:00 103      /usr/lib/dirty.so", private_dirty=4),
    _mapping("7f0000032000-7f0000033000 r--p 00000000 fe:00 103      /usr/lib/shdirty.so", shared_dirty=4),
    _mapping("7f0000034000-7f0000035000 r--p 00000000 fe:00 104      /usr/lib/swapped.so", swap=4),
    _mapping("7f0000036000-7f0000037000 r--p 00000000 fe:00 105      /usr/lib/nofields.so", omit=("Anonymous",)),
    _mapping("7f0000038000-7f0000039000 r--p 00000000 fe:00 106      /usr/lib/notresident.so", rss=0),
    _mapping("7f000003a000-7f000003b000 r-xp 00000000 fe:00 107      /usr/lib/locked.so",
             vmflags="rd ex mr mw me lo"),
    _mapping("7f0000040000-7f0000041000 rw-p 00022000 fe:00 101      /usr/lib/libkeep.so.1"),
    _mapping("7f0000042000-7f0000043000 r--s 00000000 fe:00 108      /usr/lib/shared-map.cache"),
    _mapping("7f0000044000-7f0000045000 r--p 00000000 00:00 0 "),
    _mapping("7f0000046000-7f0000047000 r--p 00000000 00:01 2049     /memfd:jit (deleted)"),
    _mapping("7f0000048000-7f0000049000 r--p 00000000 fe:00 109      /usr/lib/gone.so (deleted)"),
    _mapping("7f000004a000-7f000004b000 r--p 00000000 00:05 6        /dev/zero"),
    _mapping("55d000000000-55d000100000 rw-p 00000000 00:00 0        [heap]", anonymous=8, private_dirty=8),
    _mapping("7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0        [stack]", anonymous=8, private_dirty=8),
    _mapping("7ffd10000000-7ffd10004000 r--p 00000000 00:00 0        [vvar]"),
    _mapping("7ffd10004000-7ffd10006000 r-xp 00000000 00:00 0        [vdso]", vmflags="rd ex mr mw me de"),
    _mapping("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]"),
])


def test_releasable_mappings_are_only_clean_read_only_private_regular_files():
    def regular_file(path, inode):  # stands in for os.stat: /dev/zero is a device, the rest regular files
        return not path.startswith("/dev/")
    assert len(template.parse_smaps(SAMPLE_SMAPS)) == 21
    got = [(m.start, m.perms, m.path) for m in template.releasable_mappings(SAMPLE_SMAPS, regular_file)]
    assert got == [(0x7f0000000000, "r--p", "/usr/lib/libkeep.so.1"),
                   (0x7f0000002000, "r-xp", "/usr/lib/libkeep.so.1"),
                   (0x7f0000010000, "r--p", "/opt/my libs/with space.so")]
    # and a real file is checked for what it is: a replaced file (other inode) or a device is left alone
    assert not template._regular_file("/dev/null", os.stat("/dev/null").st_ino)
    assert not template._regular_file(sys.executable, os.stat(sys.executable).st_ino + 1)
    assert template._regular_file(os.path.realpath(sys.executable), os.stat(sys.executable).st_ino)


RELEASE_CHILD = r"""
import json, sys
import numpy as np
import scipy.linalg
from analytics_worker import template

def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4
def work():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(60, 60)) + 60 * np.eye(60)
    return [float(np.sort(rng.normal(size=1000))[500]), float(scipy.linalg.solve(a, np.ones(60)).sum()),
            float(np.fft.rfft(np.arange(64.0))[3].real)]
lines = []
before_work = work()
before = rss_kb()
released = template.release_library_pages(lambda fmt, *a: lines.append(fmt % a))
after = rss_kb()
print(json.dumps({"before": before, "after": after, "released_kb": released, "log": lines,
                  "same": work() == before_work}))
"""


def test_release_library_pages_in_a_child_that_keeps_working():
    env = dict(os.environ, PYTHONPATH=PKG_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", RELEASE_CHILD], env=env, capture_output=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-2000:]
    r = json.loads(p.stdout.decode().strip().splitlines()[-1])
    assert r["same"], "numpy/scipy computed differently after their pages were released"
    assert len(r["log"]) == 1 and r["log"][0].startswith("released %d MiB of library pages"
                                                         % (r["released_kb"] // 1024)), r["log"]
    # numpy + scipy.linalg leave well over 4 MiB of library pages resident; most of them go
    assert r["released_kb"] >= 4096, r
    assert r["after"] <= r["before"] - r["released_kb"] // 2, r


def test_template_releases_library_pages_before_ready(tpl):
    line = _wait(lambda: next((l for l in tpl.stderr_lines if "of library pages" in l), None),
                 what="the release log line")
    assert "released " in line and "not released" not in line and "refused" not in line, line
    ev, w = tpl.fork(9, "tok-9")
    assert w.request("count", [1.0, 2.0, 3.0])["ok"]

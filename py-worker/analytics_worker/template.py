"""Fork-server template: import everything once, then fork warm workers on the engine's request.

The engine starts one template per pool (``python -m analytics_worker --template ...``) and talks to it
over the template's stdin/stdout (one JSON object per line, see PROTOCOL.md "Fork server"):

  engine -> template   {"op": "fork", "worker_id": N, "token": "...", "env": {...}}
  template -> engine   {"event": "ready", "pid": P, "import_ms": T}
                       {"event": "forked", "token": "...", "pid": P, "tasks": 1}
                       {"event": "refused", "token": "...", "error": "..."}

A child's exit is reported on the template's stderr, not stdout: "\x1fX<pid>\x1f<status>" where status is
"exited with status N" or "was killed by signal N". The child's own output lines travel through that same
pipe (below), so the engine reads a worker's last lines before its exit report: crash reports keep them.

EOF on stdin means "no more forks": the template keeps reaping and reporting its children until the last
one has exited, then exits itself (a rolling reload closes the old template this way while its workers
finish). Each forked child is a full worker (server.run_worker): it connects to the engine's socket and
says hello with its own token, exactly like a spawned worker.

Output: the template's stderr is a pipe the engine reads. A child writes every line of its sys.stdout /
sys.stderr to that same inherited pipe, tagged with its pid (one write() per line, below PIPE_BUF, so
lines of different processes never mix), which lets the engine attribute each line to its worker (crash
reports carry the worker's last stderr line) -- and keeps working when the template itself has died,
because the children hold their own copy of the pipe's write end.
"""

import gc
import json
import os
import random
import select
import signal
import sys
import threading
import time
import traceback

EXIT_IMPORT = 4      # the template could not import the libraries (the engine falls back to spawning)
EXIT_CHILD_FAILED = 70
EXIT_ENGINE_GONE = 75

# The engine parses this tag (ForkServerLauncher): "\x1fW<pid> <stream>\x1f<line>". \x1f (unit
# separator) never appears in a normal log line, so untagged lines (the template's own, or native code
# writing straight to fd 2) are told apart without ambiguity.
TAG = "\x1fW%d %s\x1f"
EXIT_TAG = "\x1fX%d\x1f%s\n"
_MAX_LINE_BYTES = 3500  # < PIPE_BUF (4096) with the tag: one atomic write() per line


def task_count():
    """Threads of this process as the kernel sees them (native BLAS/OpenMP threads included)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def check_single_threaded():
    """(tasks, None) when forking is safe, else (tasks, reason): a forked child inherits only the forking
    thread, so a lock held by any other thread (Python or native) would stay locked in the child forever."""
    n = task_count()
    if n != 1:
        return n, ("the template has %d threads (Python ones: %s); forking now could copy a lock held by "
                   "another thread, refusing to fork" % (n, ", ".join(t.name for t in threading.enumerate())))
    return n, None


class TaggedStream:
    """A text stream for a forked child's sys.stdout/sys.stderr: each complete line -> one tagged write()."""

    def __init__(self, fd, stream):
        self.fd = fd
        self.tag = (TAG % (os.getpid(), stream)).encode()
        self.pending = ""

    def write(self, s):
        self.pending += s
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            self._emit(line)
        return len(s)

    def _emit(self, line):
        data = line.encode("utf-8", "replace")
        room = _MAX_LINE_BYTES - len(self.tag)
        for i in range(0, max(1, len(data)), room):
            try:
                os.write(self.fd, self.tag + data[i:i + room] + b"\n")
            except OSError:
                return  # the engine is gone: nothing to report to

    def flush(self):
        pass  # partial lines wait for their newline (a traceback is written in pieces)

    def close_out(self):
        if self.pending:
            line, self.pending = self.pending, ""
            self._emit(line)

    def isatty(self):
        return False

    def fileno(self):
        return self.fd

    @property
    def encoding(self):
        return "utf-8"


def describe_status(status):
    if os.WIFSIGNALED(status):
        return "was killed by signal %d" % os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return "exited with status %d" % os.WEXITSTATUS(status)
    return "ended (wait status %d)" % status


def watch_engine(engine_pid, pidfd):
    """In a forked worker: exit at once when the engine process ends (even by kill -9).

    PR_SET_PDEATHSIG would fire on the template's death, not the engine's, so the worker watches the engine
    itself: a pidfd (inherited from the template) becomes readable when the process exits."""
    def run():
        try:
            if pidfd is not None:
                select.select([pidfd], [], [])
            else:  # no pidfd_open (Linux < 5.3): poll
                while True:
                    os.kill(engine_pid, 0)
                    time.sleep(1.0)
        except (OSError, ValueError):
            pass
        os._exit(EXIT_ENGINE_GONE)
    t = threading.Thread(target=run, name="engine-watch", daemon=True)
    t.start()


def prewarm(log):
    """One-time set-up the first ML request of every child would otherwise repeat, done once here. No
    computation (it could start BLAS/OpenMP thread pools): scikit-learn's threadpoolctl controller only
    inspects the loaded libraries (~35 ms per process on first use)."""
    try:
        from sklearn.utils.parallel import _get_threadpool_controller  # private: best effort
        _get_threadpool_controller()
    except Exception as e:  # an optimisation only: say so and go on
        log("prewarm skipped (%s: %s)", type(e).__name__, e)


def malloc_trim():
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


class Template:
    def __init__(self, args, out, log):
        self.args = args
        self.out = out          # control channel towards the engine (the template's stdout)
        self.log = log
        self.children = set()
        self.accepting = True
        self.engine_pidfd = None

    def send(self, event):
        data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        try:
            os.write(self.out, data)
        except OSError:
            pass  # engine gone: stdin EOF ends the loop

    def reap(self):
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            try:
                os.write(2, (EXIT_TAG % (pid, describe_status(status))).encode())
            except OSError:
                pass

    def fork(self, req):
        token = req.get("token")
        worker_id = req.get("worker_id")
        env = req.get("env") or {}
        if not isinstance(token, str) or type(worker_id) is not int or not isinstance(env, dict):
            self.send({"event": "refused", "token": token if isinstance(token, str) else None,
                       "error": "bad fork request: need string token, integer worker_id, map env"})
            return
        tasks, refusal = check_single_threaded()
        if refusal is not None:
            self.log("fork of worker[%d] refused: %s", worker_id, refusal)
            self.send({"event": "refused", "token": token, "error": refusal})
            return
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._child(worker_id, token, env)  # never returns
        self.children.add(pid)
        self.send({"event": "forked", "token": token, "pid": pid, "tasks": tasks})

    def _child(self, worker_id, token, env):
        status = EXIT_CHILD_FAILED
        err = None
        try:
            from . import server
            # Not inherited: the control channel (stdin/stdout) and the SIGCHLD wake-up pipe.
            signal.set_wakeup_fd(-1)
            for fd in self.private_fds:
                os.close(fd)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            os.dup2(2, 1)  # native writes to stdout join stderr (tagged by nobody, logged by the engine)
            for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as in any Python process: EPIPE, not death
            server.Title(worker_id).set("starting")  # before hello: never seen under the template's title
            err = TaggedStream(2, "stderr")
            sys.stderr = err
            sys.stdout = TaggedStream(2, "stdout")
            os.environ.update({str(k): str(v) for k, v in env.items()})
            # Fresh random state: every child would otherwise replay the template's streams.
            random.seed()
            import numpy as np
            np.random.seed(int.from_bytes(os.urandom(4), "little"))
            gc.enable()  # the template's objects stay frozen (shared pages); the child's own are collected
            if self.args.engine_pid > 0:  # without --engine-pid (by hand): EOF on the socket only
                watch_engine(self.args.engine_pid, self.engine_pidfd)
            status = server.run_worker(self.args.socket, worker_id, token, self.args.max_frame,
                                       self.args.enable_test_algorithms)
        except BaseException:  # noqa: B902 - a child must never return into the template's loop
            try:
                sys.stderr.write("analytics-worker[%d] failed after fork:\n%s" % (worker_id, traceback.format_exc()))
            except Exception:
                pass
        finally:
            if err is not None:
                err.close_out()
                getattr(sys.stdout, "close_out", lambda: None)()
            os._exit(status)

    def serve(self):
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        signal.signal(signal.SIGCHLD, lambda *a: None)
        signal.set_wakeup_fd(w)
        self.private_fds = (r, w)
        stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
        buf = b""
        while self.accepting or self.children:
            watch = [r] + ([0] if self.accepting else [])
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
            if r in ready:
                try:
                    while os.read(r, 512):
                        pass
                except BlockingIOError:
                    pass
                self.reap()
            if 0 in ready:
                chunk = os.read(0, 65536)
                if not chunk:
                    self.accepting = False
                    if self.children:
                        self.log("control channel closed; waiting for %d worker(s) to end", len(self.children))
                    continue
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    try:
                        req = json.loads(line)
                    except ValueError:
                        self.log("ignoring a control line that is not JSON: %.80r", line)
                        continue
                    if isinstance(req, dict) and req.get("op") == "fork":
                        self.fork(req)
                    else:
                        self.log("ignoring unknown control request %.80r", line)
            self.reap()
        return 0


def main(args):
    from . import server
    log = server.Log(-1)
    log.prefix = "analytics-worker-template "
    # Clean stop: when the whole unit or process group gets SIGTERM, the template must not die (the engine
    # would start a new one during its drain). It ends when the engine closes the control channel, or dies
    # (EOF, parent-death signal). Installed first thing, so that holds during the imports too.
    signal.signal(signal.SIGTERM, lambda *a: log("SIGTERM ignored: the template ends when the engine "
                                                 "closes its control channel"))
    server.set_parent_death_signal()  # the template is the engine's own child: PDEATHSIG is right here
    server.Title(0).set_raw("analytics-worker-template starting")
    t0 = time.perf_counter()
    gc.disable()  # nothing collected (and so nothing written) while building what the children share
    try:
        server.load_algorithms()
        server.preload()
        from .core import served_algorithms
        served_algorithms(args.enable_test_algorithms)
        import numpy as np  # noqa: F401
    except Exception as e:
        log("cannot import the worker libraries: %s: %s", type(e).__name__, e)
        return EXIT_IMPORT
    prewarm(log)
    import_ms = int((time.perf_counter() - t0) * 1000)
    tmpl = Template(args, 1, log)
    if args.engine_pid:
        try:
            tmpl.engine_pidfd = os.pidfd_open(args.engine_pid)
        except (AttributeError, OSError):
            tmpl.engine_pidfd = None
    _, refusal = check_single_threaded()
    if refusal is not None:
        log("%s (set OMP_NUM_THREADS/OPENBLAS_NUM_THREADS=1)", refusal)
    # Garbage the imports left (cycles, with the collector off) would be copied into every child: drop it
    # and hand the freed heap back to the kernel now, before any fork. Then freeze what is left: it moves to a
    # generation the collector never touches, so its pages stay shared with the children.
    gc.collect()
    malloc_trim()
    gc.freeze()
    server.Title(0).set_raw("analytics-worker-template")
    log("ready: imported the libraries in %d ms; %d thread(s)", import_ms, task_count())
    tmpl.send({"event": "ready", "pid": os.getpid(), "import_ms": import_ms})
    return tmpl.serve()

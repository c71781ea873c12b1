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
import stat
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
    itself: a pidfd (inherited from the template) becomes readable when the process exits.

    The thread blocks every signal: the kernel delivers a process-directed signal to any thread that does not
    block it, and the worker gets one SIGIO per incoming frame (cancellation, see server.py). Delivered here, it
    interrupted this select (EINTR), which then took the GIL from the request being computed to retry, while the
    Python-level handler still had to run on the main thread (bench/README.md, "The small-request toll",
    round 4)."""
    def run():
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
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


# ------------------------------------------------------------------ releasing the libraries' clean pages
#
# The imports leave the template with tens of MiB of resident pages of the libraries' .so files (numpy,
# scipy, scikit-learn, OpenBLAS...), most of them touched once while importing and never again by a worker.
# They count in the template's PSS for as long as it lives. Clean pages of a private file mapping that were
# never written are exact copies of the file: MADV_DONTNEED drops them from this process and the next touch
# faults them back in from the page cache (the forked workers share them there, as any two processes
# mapping the same file do). A page of such a mapping that *was* written (RELRO: relocated, then made
# read-only; text relocations) is a private anonymous copy: dropping it would revert it to the file's
# unrelocated bytes and crash the process. /proc/self/maps cannot tell the two apart, so the selection reads
# /proc/self/smaps and keeps a mapping only if nothing of it is anonymous, dirty or swapped.

MADV_DONTNEED = 4  # Linux, all the architectures we run on (asm-generic/mman-common.h)
_RELEASE_PERMS = ("r--p", "r-xp")
# VmFlags that make a mapping special: locked, I/O or raw-PFN memory, hugetlb, userfaultfd-managed
_UNSAFE_VMFLAGS = frozenset(("lo", "io", "pf", "ht", "um", "uw"))
# every one of these must be present and 0 kB, or the mapping is left alone
_MUST_BE_ZERO = ("Anonymous", "Private_Dirty", "Shared_Dirty", "Swap")


class Mapping:
    __slots__ = ("start", "end", "perms", "inode", "path", "fields", "vmflags")

    def __init__(self, start, end, perms, inode, path):
        self.start, self.end, self.perms, self.inode, self.path = start, end, perms, inode, path
        self.fields = {}
        self.vmflags = None

    @property
    def rss_kb(self):
        return self.fields.get("Rss", 0)

    def __repr__(self):
        return "Mapping(%x-%x %s %s)" % (self.start, self.end, self.perms, self.path)


def parse_smaps(text):
    """The mappings of a /proc/<pid>/smaps text, each with its kB fields and VmFlags."""
    out = []
    cur = None
    for line in text.splitlines():
        head = line.split(None, 5)
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
            try:
                lo, hi = head[0].split("-")
                cur = Mapping(int(lo, 16), int(hi, 16), head[1], int(head[4]), head[5] if len(head) > 5 else "")
            except ValueError:
                cur = None  # not a header we understand: its fields are ignored with it
                continue
            out.append(cur)
        elif cur is not None and line.startswith("VmFlags:"):
            cur.vmflags = frozenset(line.split()[1:])
        elif cur is not None and ":" in line:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                cur.fields[key] = int(parts[0])
    return out


def _regular_file(path, inode):
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_ino == inode


def releasable_mappings(smaps_text, regular_file=_regular_file):
    """The mappings whose resident pages can be dropped safely: private, read-only (r--p / r-xp), backed by
    a regular file that still exists, with resident pages, and clean -- nothing anonymous, dirty or swapped
    (the kernel's own accounting). Anything else, or anything not reported in full, is left alone."""
    keep = []
    for m in parse_smaps(smaps_text):
        if m.perms not in _RELEASE_PERMS or m.inode == 0 or not m.path.startswith("/"):
            continue  # anonymous, writable, shared, [heap]/[stack]/[vdso]/[vvar]/[vsyscall]
        if m.path.endswith(" (deleted)"):
            continue
        if m.vmflags is None or m.vmflags & _UNSAFE_VMFLAGS:
            continue
        if any(m.fields.get(k) != 0 for k in _MUST_BE_ZERO):
            continue  # a missing field counts as "not known to be clean"
        if m.rss_kb <= 0 or m.end <= m.start:
            continue
        if not regular_file(m.path, m.inode):
            continue  # a device, or the file was replaced since it was mapped
        keep.append(m)
    return keep


def release_library_pages(log):
    """Drop this process's resident pages of clean, read-only library mappings (see above). Best effort:
    a failure is logged, never raised. Returns the kB released (the mappings' Rss before the call)."""
    if not sys.platform.startswith("linux"):
        return 0
    t0 = time.perf_counter()
    try:
        import ctypes
        # Everything that could load a library or map memory is done before smaps is read, so the list
        # describes the mappings as they are when madvise runs (the template is single-threaded).
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        madvise.restype = ctypes.c_int
        with open("/proc/self/smaps", "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
        released_kb, failed, first_error = 0, 0, None
        candidates = releasable_mappings(text)
        for m in candidates:
            if madvise(m.start, m.end - m.start, MADV_DONTNEED) == 0:
                released_kb += m.rss_kb
            else:
                failed += 1
                if first_error is None:
                    first_error = "%s: %s" % (m.path, os.strerror(ctypes.get_errno()))
    except Exception as e:  # an optimisation only: never stop the template for it
        log("library pages not released (%s: %s)", type(e).__name__, e)
        return 0
    log("released %d MiB of library pages (%d mappings) in %d ms%s", released_kb // 1024,
        len(candidates) - failed, int((time.perf_counter() - t0) * 1000),
        "" if not failed else "; %d mapping(s) refused, first: %s" % (failed, first_error))
    return released_kb


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
    # Last, after everything that touches the libraries: what the children never use stays out of memory.
    release_library_pages(log)
    server.Title(0).set_raw("analytics-worker-template")
    log("ready: imported the libraries in %d ms; %d thread(s)", import_ms, task_count())
    tmpl.send({"event": "ready", "pid": os.getpid(), "import_ms": import_ms})
    return tmpl.serve()

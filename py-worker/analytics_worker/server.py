"""The worker process: connect to the engine, say hello, serve one request at a time."""

import argparse
import fcntl
import mmap
import os
import re
import signal
import stat
import platform
import socket
import struct
import sys
import time
import traceback

import msgpack
import numpy as np

from . import __version__
from .core import (CANCELLED, INTERNAL, INVALID_ARGUMENT, UNKNOWN_ALGORITHM, AlgorithmError, Cancelled, Input,
                   served_algorithms)
from .jsonout import to_json
from .protocol import (DEFAULT_MAX_FRAME, PROTOCOL_VERSION, ConnectionClosed, ProtocolError, decode_body,
                       encode_frame, read_frame, write_raw)

EXIT_OK = 0
EXIT_PROTOCOL = 2
EXIT_CONNECT = 3
EXIT_USAGE = 64

TOKEN_ENV = "ANALYTICS_WORKER_TOKEN"
MAX_MESSAGE_CHARS = 400
MIN_MAX_FRAME = 65536  # the hello alone is several KiB


# --------------------------------------------------------------------------- process plumbing

class Log:
    def __init__(self, worker_id):
        self.prefix = "analytics-worker[%d] " % worker_id

    def __call__(self, fmt, *args):
        try:
            sys.stderr.write(self.prefix + (fmt % args if args else fmt) + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def set_parent_death_signal():
    """Linux: ask for SIGKILL when the parent (the engine) dies, even by kill -9. Not SIGTERM: a worker
    treats SIGTERM as "finish the current request, then wait for the engine's shutdown" (clean stop)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        import signal
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _printable(s):
    return "".join(c if c.isprintable() else "?" for c in s)


class Title:
    """The process title htop/ps show: "analytics-worker[N] idle" or "...[N] busy <algorithm> req=<id[:8]>".

    busy()/idle() run twice per request, so the strings are built ahead: the idle title once, the busy
    prefix once per algorithm name; per request only the id is cut (and cleaned in the rare case it needs it)."""

    ALGO_CHARS = 40
    ID_CHARS = 8
    _MAX_CACHED = 256  # algorithm names come from the frame: a client inventing names must not grow this

    def __init__(self, worker_id):
        self.base = "analytics-worker[%d]" % worker_id
        self._idle = self.base + " idle"
        self._busy_prefix = {}
        try:
            from setproctitle import setproctitle
            self._set = setproctitle
        except ImportError:  # still serve, just without readable titles
            self._set = None

    def set(self, state):
        self.set_raw(self.base + " " + state)

    def set_raw(self, title):
        if self._set is not None:
            self._set(title)

    def idle(self):
        if self._set is not None:
            self._set(self._idle)

    def busy_title(self, algorithm, req_id):
        # algorithm and id come from the frame: keep the title printable and short
        prefix = self._busy_prefix.get(algorithm)
        if prefix is None:
            prefix = "%s busy %s req=" % (self.base, _printable(algorithm[:self.ALGO_CHARS]))
            if len(self._busy_prefix) < self._MAX_CACHED:
                self._busy_prefix[algorithm] = prefix
        rid = req_id[:self.ID_CHARS]
        if not rid.isprintable():
            rid = _printable(rid)
        return prefix + rid

    def busy(self, algorithm, req_id):
        if self._set is not None:
            self._set(self.busy_title(algorithm, req_id))


def rss_bytes():
    try:
        with open("/proc/self/statm", "rb") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import resource
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        except Exception:
            return 0


def _dist_version(dist_name):
    """Version of an installed distribution, without importing it (keeps start-up fast)."""
    norm = dist_name.replace("-", "_").lower()
    for d in sys.path:
        try:
            names = os.listdir(d or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info") or name.endswith(".egg-info"):
                base = name.rsplit(".", 1)[0]
                pkg, _, ver = base.partition("-")
                if pkg.replace("-", "_").lower() == norm and ver:
                    return ver
    return "unknown"


def library_versions():
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": _dist_version("scipy"),
        "sklearn": _dist_version("scikit-learn"),
        "statsmodels": _dist_version("statsmodels"),
        "msgpack": ".".join(str(v) for v in msgpack.version),
        "worker": __version__,
    }


PRELOAD_MODULES = (
    "scipy.stats", "sklearn.cluster", "sklearn.decomposition", "sklearn.ensemble", "sklearn.linear_model",
    "sklearn.metrics", "sklearn.feature_extraction.text", "statsmodels.tsa.arima.model",
    "statsmodels.tsa.seasonal",
)


def preload():
    """Import the heavy libraries now (before hello), so the first request does not pay for them."""
    import importlib
    for name in PRELOAD_MODULES:
        importlib.import_module(name)
    from .algorithms import text
    text._vader()


def load_algorithms():
    # importing the modules registers their algorithms; heavy libraries are imported lazily inside
    from .algorithms import ml, stats, testing, text, timeseries  # noqa: F401


# --------------------------------------------------------------------------- request handling

def _one_line(s):
    s = " ".join(str(s).split())
    return s if len(s) <= MAX_MESSAGE_CHARS else s[:MAX_MESSAGE_CHARS - 3] + "..."


class BadRequest(Exception):
    pass


def _decode_floats(raw, field):
    if not isinstance(raw, (bytes, bytearray)):
        raise BadRequest("field '%s' must be msgpack bin (little-endian float64), got %s" % (field, type(raw).__name__))
    if len(raw) % 8:
        raise BadRequest("field '%s' has %d bytes, not a multiple of 8" % (field, len(raw)))
    return np.frombuffer(raw, dtype="<f8")


# Shared-memory hand-off (PROTOCOL.md, "data_file"): the engine writes a large float64 array into a file of
# its private runtime directory and sends only the file's name. The name is checked before it is joined with
# the directory the worker already knows (the --socket directory); nothing else from a frame becomes a path.
FEATURES = ("data_file",)
# Revision 3: "cancel" (a cancel frame stops the running computation) needs signal-driven I/O on the socket;
# "progress" (progress frames while computing) is always offered.
CANCEL_FEATURE = "cancel"
PROGRESS_FEATURE = "progress"
# At most one progress frame per this many seconds (the last one, fraction 1, always goes out).
PROGRESS_MIN_INTERVAL_S = 0.1
_F_SETOWN = getattr(fcntl, "F_SETOWN", 8)  # 8 on Linux
# A cancel that arrives while a module is being imported (algorithms import scikit-learn/statsmodels on first
# use) waits until the import is over, looking again this often: an import cut in half can leave a package
# half-initialised for every later request of this worker.
CANCEL_RECHECK_S = 0.01


def _importing():
    """True while some module is being imported (the import system holds a per-module lock meanwhile)."""
    import importlib._bootstrap as bootstrap
    return bool(getattr(bootstrap, "_module_locks", None))
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_DATA_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}\Z")


def _map_floats(ref, field, data_dir, maps):
    """Maps the file named by a data_file/target_file map read-only; returns a read-only float64 view."""
    if data_dir is None:
        raise BadRequest("field '%s' is not supported by this worker (no runtime directory)" % field)
    if not isinstance(ref, dict) or set(ref) != {"name", "nbytes"}:
        raise BadRequest("field '%s' must be a map with exactly 'name' and 'nbytes'" % field)
    name, nbytes = ref["name"], ref["nbytes"]
    if not isinstance(name, str) or not _DATA_FILE_NAME.match(name) or ".." in name:
        raise BadRequest("field '%s' has an invalid file name (a plain name of [A-Za-z0-9_.-] is required)" % field)
    if type(nbytes) is not int or nbytes < 0 or nbytes % 8:
        raise BadRequest("field '%s': nbytes must be a non-negative multiple of 8" % field)
    try:
        fd = os.open(os.path.join(data_dir, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BadRequest("field '%s': file %.80r not found in the runtime directory" % (field, name))
    except OSError as e:
        raise BadRequest("field '%s': cannot open %.80r (%s)" % (field, name, e.strerror or type(e).__name__))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadRequest("field '%s': %.80r is not a regular file" % (field, name))
        if st.st_size != nbytes:
            raise BadRequest("field '%s': file %.80r has %d bytes, nbytes says %d" % (field, name, st.st_size, nbytes))
        if nbytes == 0:
            return np.empty(0, dtype="<f8")
        # MAP_POPULATE (Linux, Python >= 3.10): map all pages at once instead of one fault per 4 KiB page
        mm = mmap.mmap(fd, nbytes, flags=mmap.MAP_SHARED | _MAP_POPULATE, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    maps.append(mm)
    return np.frombuffer(mm, dtype="<f8")  # read-only, no copy


def _release_maps(maps):
    """Unmaps the request's files; a mapping still referenced (e.g. kept by a result) is left to the GC."""
    while maps:
        mm = maps.pop()
        try:
            mm.close()
        except BufferError:
            pass


def decode_request(msg, algorithms, data_dir=None, maps=None, progress=None):
    """Validate a request map; returns (Algorithm, Input). Raises BadRequest / AlgorithmError.

    ``data_dir`` is the runtime directory for ``data_file``/``target_file`` (None: not supported); the
    mappings made are appended to ``maps`` for the caller to release with _release_maps once done."""
    if maps is None:
        maps = []
    name = msg.get("algorithm")
    if not isinstance(name, str):
        raise BadRequest("field 'algorithm' must be a string")
    algo = algorithms.get(name)
    if algo is None:
        raise AlgorithmError(UNKNOWN_ALGORITHM, "unknown algorithm %.80r" % name)

    params = msg.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
        raise BadRequest("field 'params' must be a map of string to string")

    data_ref = msg.get("data_file")
    if data_ref is not None:
        if msg.get("data") is not None:
            raise BadRequest("fields 'data' and 'data_file' are mutually exclusive")
        data = _map_floats(data_ref, "data_file", data_dir, maps)
    else:
        raw = msg.get("data", b"")
        data = _decode_floats(b"" if raw is None else raw, "data")

    shape = msg.get("shape")
    if shape is None or shape == []:
        shape = [data.size]
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
            or not all(type(s) is int and s >= 0 for s in shape)):
        raise BadRequest("field 'shape' must be [n] or [n, d] with non-negative integers")
    total = 1
    for s in shape:
        total *= s
    if total != data.size:
        raise BadRequest("shape %s needs %d values but data has %d" % (shape, total, data.size))

    target = msg.get("target")
    target_ref = msg.get("target_file")
    if target_ref is not None:
        if target is not None:
            raise BadRequest("fields 'target' and 'target_file' are mutually exclusive")
        target = _map_floats(target_ref, "target_file", data_dir, maps)
    elif target is not None:
        target = _decode_floats(target, "target")
    if target is not None:
        if target.size != shape[0]:
            raise BadRequest("target has %d values but data has %d rows" % (target.size, shape[0]))

    texts = msg.get("texts")
    if texts is not None:
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise BadRequest("field 'texts' must be a list of strings")

    timeout = msg.get("timeout_ms")
    if timeout is not None and type(timeout) is not int:
        raise BadRequest("field 'timeout_ms' must be an integer")

    wants = msg.get("progress", False)
    if type(wants) is not bool:
        raise BadRequest("field 'progress' must be a boolean")

    return algo, Input(name, data, shape, target, texts or [], params, algo.optional,
                       progress=progress if wants else None)


class Worker:
    def __init__(self, sock, worker_id, max_frame, enable_test, log, data_dir=None):
        self.sock = sock
        self.data_dir = data_dir  # runtime directory for data_file requests (None: msgpack bytes only)
        self.worker_id = worker_id
        self.max_frame = max_frame
        self.log = log
        self.title = Title(worker_id)
        self.algorithms = served_algorithms(enable_test)
        self.requests = 0
        # Cancellation (PROTOCOL.md, "cancel"): while an algorithm runs, the kernel signals SIGIO when a frame
        # arrives; the handler reads the complete frames there are and raises Cancelled for a cancel of the
        # running request. Other frames are kept in self.pending for serve().
        self.computing = None      # id of the request whose algorithm is running, else None
        self.sending = False       # a frame is being written: a cancel must wait until it is complete
        self.cancel_seen = False   # a cancel for self.computing arrived while sending
        self.pending = []          # frames read by the SIGIO handler that serve() still has to handle
        self.last_progress = 0.0
        self.reading = False       # _read_available is running (the handler must not re-enter it)
        self.cancel_supported = False  # set by enable_cancel() (main(); unit tests construct workers without)

    def enable_cancel(self):
        self.cancel_supported = self._enable_sigio()
        return self.cancel_supported

    def _enable_sigio(self):
        """Ask the kernel for SIGIO on this socket (F_SETOWN + O_ASYNC); False where that is not possible."""
        if self.sock is None or not hasattr(os, "O_ASYNC") or not hasattr(signal, "SIGIO"):
            return False
        try:
            signal.signal(signal.SIGIO, self._on_sigio)
            signal.signal(signal.SIGALRM, self._on_recheck)
            fd = self.sock.fileno()
            fcntl.fcntl(fd, _F_SETOWN, os.getpid())
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
            return True
        except (OSError, ValueError) as e:  # ValueError: not the main thread
            self.log("no signal-driven I/O on the engine socket (%s): cancel not offered", e)
            return False

    def _on_sigio(self, signum, frame):
        if self.computing is None or self.reading:
            return  # serve() reads the frame itself / the running read loop picks it up
        self._read_available()
        self._raise_if_cancelled()

    def _on_recheck(self, signum, frame):
        if self.computing is not None:
            self._raise_if_cancelled()

    def _raise_if_cancelled(self):
        """Raises Cancelled for a cancel of the running request, unless a frame is being written (send() raises
        after it) or a module is being imported (looked at again in CANCEL_RECHECK_S)."""
        if not self.cancel_seen or self.sending or self.computing is None:
            return
        if _importing():
            signal.setitimer(signal.ITIMER_REAL, CANCEL_RECHECK_S)
            return
        self.cancel_seen = False
        raise Cancelled()

    def _read_available(self):
        """Reads every complete frame waiting on the socket without blocking (while computing only)."""
        self.reading = True
        try:
            self._read_frames_nowait()
        finally:
            self.reading = False

    def _read_frames_nowait(self):
        while True:
            try:
                head = self.sock.recv(4, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                if len(head) < 4:
                    return
                (length,) = struct.unpack(">I", head)
                if length == 0 or length > self.max_frame or length > 1 << 20:
                    return  # serve() reads it (and reports a bad one) after the computation
                whole = self.sock.recv(4 + length, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                if len(whole) < 4 + length:
                    return  # the rest arrives later, with another SIGIO
                self.sock.recv(4 + length, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # serve() sees the broken connection
            try:
                msg = decode_body(whole[4:])
            except ProtocolError as e:
                self.pending.append(e)
                return
            if msg["type"] == "cancel" and msg.get("id") == self.computing:
                self.cancel_seen = True
            elif msg["type"] != "cancel":  # a cancel of an earlier request crossed its response: stale
                self.pending.append(msg)

    def progress(self, fraction, detail):
        """Sends a progress frame for the running request, at most one per PROGRESS_MIN_INTERVAL_S."""
        req_id = self.computing
        now = time.monotonic()
        if req_id is None or (fraction < 1.0 and now - self.last_progress < PROGRESS_MIN_INTERVAL_S):
            return
        self.last_progress = now
        self.send({"type": "progress", "id": req_id, "fraction": fraction, "detail": _one_line(detail)[:200]})

    def hello(self, token):
        return {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "token": token,
            "worker_id": self.worker_id,
            "pid": os.getpid(),
            "versions": library_versions(),
            "algorithms": {n: a.spec() for n, a in self.algorithms.items()},
            "features": ((list(FEATURES) if self.data_dir is not None else []) + [PROGRESS_FEATURE]
                         + ([CANCEL_FEATURE] if self.cancel_supported else [])),
        }

    def send(self, msg):
        header, body = encode_frame(msg)
        if len(body) > self.max_frame:
            raise ValueError("outgoing frame of %d bytes exceeds the maximum %d" % (len(body), self.max_frame))
        # A Cancelled raised in the middle of a write would leave half a frame on the socket: hold it back
        # until the frame is out (the SIGIO handler only notes it meanwhile).
        self.sending = True
        try:
            write_raw(self.sock, header, body)
        finally:
            self.sending = False
        self._raise_if_cancelled()

    def handle_request(self, msg):
        req_id = msg["id"]
        t0 = time.perf_counter()
        timings = {"decode_us": 0, "compute_us": 0, "encode_us": 0}
        resp = {"type": "response", "id": req_id, "ok": False, "timings": timings}
        algo_name = msg.get("algorithm") if isinstance(msg.get("algorithm"), str) else "?"
        self.title.busy(algo_name, req_id)
        maps = []
        inp = result = None
        try:
            try:
                algo, inp = decode_request(msg, self.algorithms, self.data_dir, maps, progress=self.progress)
            except BadRequest as e:
                raise AlgorithmError(INVALID_ARGUMENT, str(e))
            t1 = time.perf_counter()
            timings["decode_us"] = int((t1 - t0) * 1e6)
            self.cancel_seen = False
            self.last_progress = 0.0
            self.computing = req_id
            try:
                if self.cancel_supported:
                    self._read_available()  # a cancel that came right behind the request
                    self._raise_if_cancelled()
                result = algo.func(inp)
            finally:
                self.computing = None
                if self.cancel_supported:
                    signal.setitimer(signal.ITIMER_REAL, 0)  # no recheck left for the next request
                t2 = time.perf_counter()
                timings["compute_us"] = int((t2 - t1) * 1e6)
            result_json = to_json(result)
            timings["encode_us"] = int((time.perf_counter() - t2) * 1e6)
            resp["ok"] = True
            resp["result_json"] = result_json
        except Cancelled:
            self.computing = None
            self.cancel_seen = False
            self.log("request %.40r (%s) cancelled by the engine", req_id, algo_name)
            resp["error_code"] = CANCELLED
            resp["error_message"] = "%s cancelled by the engine" % algo_name
        except AlgorithmError as e:
            resp["error_code"] = e.code
            resp["error_message"] = _one_line(e.message)
        except MemoryError:
            # The input needs more memory than this worker may use (its address-space / RSS limit):
            # the same request would fail again, so it is the caller's to change, not a bug.
            self.log("request %.40r (%s): out of memory", req_id, algo_name)
            resp["error_code"] = INVALID_ARGUMENT
            resp["error_message"] = ("%s ran out of memory on this input (worker memory limit); "
                                     "send less data or raise the limit" % algo_name)
        except Exception as e:
            self.log("request %.40r (%s) failed:\n%s", req_id, algo_name, traceback.format_exc().rstrip())
            resp["error_code"] = INTERNAL
            resp["error_message"] = _one_line("internal error in %s: %s" % (algo_name, type(e).__name__))
        finally:
            inp = result = None  # drop the views of the mapped files before unmapping them
            _release_maps(maps)
        self.requests += 1
        try:
            self.send(resp)
        except ValueError as e:  # result too large for one frame
            self.log("request %.40r (%s): %s", req_id, algo_name, e)
            self.send({"type": "response", "id": req_id, "ok": False, "timings": timings,
                       "error_code": INTERNAL,
                       "error_message": "result of %s is too large for one frame (max %d bytes)"
                                        % (algo_name, self.max_frame)})
        self.title.idle()

    def serve(self):
        """Serve until shutdown/EOF (returns an exit status)."""
        self.title.idle()
        while True:
            try:
                msg = self.pending.pop(0) if self.pending else read_frame(self.sock, self.max_frame)
                if isinstance(msg, ProtocolError):
                    raise msg
            except ConnectionClosed:
                self.log("engine closed the connection; exiting")
                return EXIT_OK
            except ProtocolError as e:
                self.log("protocol error: %s; closing", e)
                return EXIT_PROTOCOL
            except OSError as e:
                self.log("socket error: %s; exiting", e)
                return EXIT_OK
            mtype = msg["type"]
            if mtype == "request":
                if not isinstance(msg.get("id"), str):
                    self.log("protocol error: request without a string 'id'; closing")
                    return EXIT_PROTOCOL
                self.handle_request(msg)
            elif mtype == "ping":
                pid = msg.get("id")
                if not isinstance(pid, str):
                    self.log("protocol error: ping without a string 'id'; closing")
                    return EXIT_PROTOCOL
                self.send({"type": "pong", "id": pid, "rss_bytes": rss_bytes(), "requests": self.requests})
            elif mtype == "shutdown":
                self.log("shutdown requested after %d requests", self.requests)
                return EXIT_OK
            # "cancel" between requests: its request was answered already (the frames crossed); ignore it


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m analytics_worker",
                                 description="Analytics engine Python worker (see PROTOCOL.md)")
    ap.add_argument("--socket", required=True, help="Unix socket path the engine listens on")
    ap.add_argument("--worker-id", type=int, help="worker number (logs and process title); required unless --template")
    ap.add_argument("--template", action="store_true",
                    help="run as the fork-server template: import everything, then fork workers on the engine's "
                         "request read from stdin (see PROTOCOL.md, 'Fork server')")
    ap.add_argument("--engine-pid", type=int, default=0,
                    help="with --template: the engine's pid; forked workers exit when that process ends")
    ap.add_argument("--max-frame", type=int, default=DEFAULT_MAX_FRAME,
                    help="maximum frame body size in bytes (default %(default)s)")
    ap.add_argument("--preload", action="store_true",
                    help="import scikit-learn, statsmodels and the VADER lexicon before hello "
                         "(slower start, faster first request)")
    ap.add_argument("--enable-test-algorithms", action="store_true",
                    help="also serve the _test_* algorithms (test suites only)")
    args = ap.parse_args(argv)
    if args.max_frame < MIN_MAX_FRAME:
        ap.error("--max-frame must be at least %d bytes" % MIN_MAX_FRAME)
    if not args.template and args.worker_id is None:
        ap.error("--worker-id is required (unless --template)")
    if args.template and args.preload:
        ap.error("--preload and --template exclude each other (the template always preloads)")
    return args


def install_clean_stop(log):
    """SIGTERM (e.g. systemd signalling the whole unit) does not end a worker: it finishes the request it is
    running and keeps waiting for the engine, which drains and then sends "shutdown" (or closes the socket,
    or dies: EOF and the parent-death/engine watch still end the worker). The engine itself never relies on
    SIGTERM to stop a worker: it sends "shutdown", and SIGKILL for a worker that must go at once."""
    import signal

    def on_term(signum, frame):
        log("SIGTERM received: finishing the current request, then waiting for the engine's shutdown message")
    signal.signal(signal.SIGTERM, on_term)


def run_worker(socket_path, worker_id, token, max_frame, enable_test, log=None):
    """Connect to the engine, say hello, serve until shutdown/EOF; returns the exit status.
    Shared by a spawned worker (main) and a worker forked from the template (template.py)."""
    log = log or Log(worker_id)
    install_clean_stop(log)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
    except OSError as e:
        log("cannot connect to %s: %s", socket_path, e)
        return EXIT_CONNECT
    from .algorithms import testing
    testing.CONNECTION["sock"] = sock
    worker = Worker(sock, worker_id, max_frame, enable_test, log,
                    data_dir=os.path.dirname(os.path.abspath(socket_path)))
    # before the hello, which lists "cancel" only when SIGIO on this socket works (every way of starting a
    # worker process comes through here, in the process that serves the socket)
    worker.enable_cancel()
    try:
        try:
            worker.send(worker.hello(token))
        except ValueError as e:
            log("cannot send hello: %s", e)
            return EXIT_PROTOCOL
        status = worker.serve()
    except (BrokenPipeError, ConnectionResetError) as e:
        log("connection lost: %s; exiting", e)
        status = EXIT_OK
    except KeyboardInterrupt:
        status = 130
    finally:
        try:
            sock.close()
        except OSError:
            pass
    return status


def main(argv=None):
    args = parse_args(argv)
    if args.template:
        from . import template
        return template.main(args)
    log = Log(args.worker_id)
    token = os.environ.pop(TOKEN_ENV, None)  # not inherited by anything we might start
    if token is None:
        log("environment variable %s is not set; the engine sets it when it spawns a worker", TOKEN_ENV)
        return EXIT_USAGE
    set_parent_death_signal()
    title = Title(args.worker_id)
    title.set("starting")
    load_algorithms()
    if args.preload:
        preload()
    return run_worker(args.socket, args.worker_id, token, args.max_frame, args.enable_test_algorithms, log)

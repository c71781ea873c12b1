"""The worker: connect to the engine, say hello, serve one request at a time (cancel via SIGIO, progress).

What a request frame becomes is decode.py; this process's title, RSS, versions, parent death and clean stop
are process.py."""

import argparse
import fcntl
import os
import signal
import socket
import time
import traceback

from .core import CANCELLED, INTERNAL, INVALID_ARGUMENT, AlgorithmError, Cancelled, served_algorithms
# The names below are part of this module's interface too: template.py, the tests and tests/faults.sh reach
# them as server.<name>.
from .decode import BadRequest, _release_maps, decode_request
from .jsonout import to_json
from .process import (Log, Title, install_clean_stop, library_versions, load_algorithms, preload, rss_bytes,
                      set_parent_death_signal)
from .protocol import (DEFAULT_MAX_FRAME, PROTOCOL_VERSION, ConnectionClosed, FrameReader, ProtocolError,
                       encode_frame, write_raw)

EXIT_OK = 0
EXIT_PROTOCOL = 2
EXIT_CONNECT = 3
EXIT_USAGE = 64

TOKEN_ENV = "ANALYTICS_WORKER_TOKEN"
MAX_MESSAGE_CHARS = 400
MIN_MAX_FRAME = 65536  # the hello alone is several KiB


def _one_line(s):
    s = " ".join(str(s).split())
    return s if len(s) <= MAX_MESSAGE_CHARS else s[:MAX_MESSAGE_CHARS - 3] + "..."


# Offered in the hello when the worker knows its runtime directory (decode.py maps the files).
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
        self.recheck_armed = False  # the CANCEL_RECHECK_S timer is set (disarmed after the computation)
        self.frames = FrameReader(sock, max_frame) if sock is not None else None

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
            self.recheck_armed = True
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
                # a frame over 1 MiB is no cancel: serve() reads it (and reports a bad one) after the computation
                msg = self.frames.read_nowait(1 << 20)
            except ProtocolError as e:
                self.pending.append(e)
                return
            if msg is None:
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
                if self.recheck_armed:  # no recheck left for the next request (a syscall only when one was set)
                    self.recheck_armed = False
                    signal.setitimer(signal.ITIMER_REAL, 0)
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
                msg = self.pending.pop(0) if self.pending else self.frames.read()
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

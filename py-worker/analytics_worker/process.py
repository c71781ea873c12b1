"""This process: its log prefix, title, RSS, library versions, parent-death signal, preload and clean stop."""

import os
import platform
import signal
import sys

import msgpack
import numpy as np

from . import __version__


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


def install_clean_stop(log):
    """SIGTERM (e.g. systemd signalling the whole unit) does not end a worker: it finishes the request it is
    running and keeps waiting for the engine, which drains and then sends "shutdown" (or closes the socket,
    or dies: EOF and the parent-death/engine watch still end the worker). The engine itself never relies on
    SIGTERM to stop a worker: it sends "shutdown", and SIGKILL for a worker that must go at once."""

    def on_term(signum, frame):
        log("SIGTERM received: finishing the current request, then waiting for the engine's shutdown message")
    signal.signal(signal.SIGTERM, on_term)

"""Registry, request input, parameter parsing and errors shared by all algorithms."""

import math
import re

import numpy as np

_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")

INVALID_ARGUMENT = "INVALID_ARGUMENT"
UNKNOWN_ALGORITHM = "UNKNOWN_ALGORITHM"
INTERNAL = "INTERNAL"
CANCELLED = "CANCELLED"


class Cancelled(BaseException):
    """The engine cancelled the running request (a ``cancel`` frame, PROTOCOL.md).

    Raised in the main thread by the worker's SIGIO handler at the next Python bytecode boundary of the
    computation. A BaseException, like KeyboardInterrupt, so that ``except Exception`` blocks inside
    scikit-learn/statsmodels/numpy wrappers cannot swallow it: the computation unwinds to the worker.
    """


# every error_code a worker sends; the engine maps each (WorkerMessage.WorkerError, checked by a test)
ERROR_CODES = (INVALID_ARGUMENT, UNKNOWN_ALGORITHM, INTERNAL, CANCELLED)


class AlgorithmError(Exception):
    """An analysis that cannot be answered; becomes ok=false with this code and message."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidArgument(AlgorithmError):
    def __init__(self, message):
        super().__init__(INVALID_ARGUMENT, message)


# --------------------------------------------------------------------------- registry

class Algorithm:
    __slots__ = ("name", "func", "description", "required", "optional", "input", "test_only")

    def __init__(self, name, func, description, required, optional, input_kind, test_only):
        self.name = name
        self.func = func
        self.description = description
        self.required = list(required)
        self.optional = dict(optional)
        self.input = input_kind
        self.test_only = test_only

    def spec(self):
        """What the hello announces: the catalogue entry (catalogue.py) plus required/optional."""
        from .catalogue import entry
        out = entry(self, strict=False)
        del out["name"]
        out["required"] = list(self.required)
        out["optional"] = dict(self.optional)
        return out


REGISTRY = {}
INPUT_KINDS = ("series", "matrix", "text")


def algorithm(name, description, input="series", required=(), optional=None, test_only=False):
    """Register ``func(inp) -> JSON-compatible result`` under ``name``.

    ``optional`` maps param name -> default, as a string exactly as a client would send it.
    """
    assert input in INPUT_KINDS, input
    for k, v in (optional or {}).items():
        assert isinstance(k, str) and isinstance(v, str), (name, k, v)

    def deco(func):
        if name in REGISTRY:
            raise RuntimeError("algorithm %r registered twice" % name)
        REGISTRY[name] = Algorithm(name, func, description, required, optional or {}, input, test_only)
        return func

    return deco


def served_algorithms(enable_test):
    return {n: a for n, a in sorted(REGISTRY.items()) if enable_test or not a.test_only}


# --------------------------------------------------------------------------- parameters

class Params:
    """Typed access to the string params of a request, with defaults from the algorithm's spec.

    Every parse error is an InvalidArgument naming the param and echoing the bad value.
    """

    def __init__(self, raw, defaults):
        self.raw = raw
        self.defaults = defaults

    def has(self, name):
        v = self.raw.get(name)
        return v is not None and v.strip() != ""

    def get_str(self, name, default=None):
        v = self.raw.get(name)
        if v is None or v.strip() == "":
            v = self.defaults.get(name, default)
        return v

    def required_str(self, name):
        v = self.raw.get(name)
        if v is None or v.strip() == "":
            raise InvalidArgument("missing required param '%s'" % name)
        return v

    def _value(self, name, required):
        if required:
            return self.required_str(name)
        return self.get_str(name)

    def int(self, name, min=None, max=None, required=False, default=None):
        v = self._value(name, required)
        if v is None:
            v = default
        if v is None:
            return None
        s = v.strip() if isinstance(v, str) else str(v)
        if _INTEGER.fullmatch(s) and len(s) <= 40:
            n = int(s)
        elif len(s) <= 40 and _DECIMAL.fullmatch(s) and float(s).is_integer():
            n = int(float(s))  # "5.0" and "1e3" are integers; "5.5" is not
        else:
            raise InvalidArgument("param '%s' must be an integer%s, got %r" % (name, _range_text(min, max), v))
        if (min is not None and n < min) or (max is not None and n > max):
            raise InvalidArgument("param '%s' must be an integer%s, got %r" % (name, _range_text(min, max), v))
        return n

    def float(self, name, min=None, max=None, required=False, default=None, min_exclusive=False):
        """A decimal number (``[+-]digits[.digits][e[+-]digits]``, as the native side accepts);
        no nan/inf/hex/underscores."""
        v = self._value(name, required)
        if v is None:
            v = default
        if v is None:
            return None
        s = v.strip() if isinstance(v, str) else str(v)
        f = float(s) if _DECIMAL.fullmatch(s) else None
        if (f is None or not math.isfinite(f) or (min is not None and (f < min or (min_exclusive and f == min)))
                or (max is not None and f > max)):
            raise InvalidArgument("param '%s' must be a number%s, got %r"
                                  % (name, _range_text(min, max, min_exclusive), v))
        return f

    def bool(self, name):
        v = self.get_str(name)
        s = v.strip().lower()
        if s in ("true", "1", "yes", "on"):
            return True
        if s in ("false", "0", "no", "off"):
            return False
        raise InvalidArgument("param '%s' must be true or false, got %r" % (name, v))

    def choice(self, name, choices):
        v = self.get_str(name)
        s = v.strip().lower()
        if s not in choices:
            raise InvalidArgument("param '%s' must be one of %s, got %r" % (name, ", ".join(choices), v))
        return s


def _range_text(lo, hi, lo_exclusive=False):
    if lo is not None and hi is not None:
        return " between %s and %s" % (_num(lo), _num(hi)) if not lo_exclusive else " > %s and <= %s" % (_num(lo), _num(hi))
    if lo is not None:
        return (" > %s" if lo_exclusive else " >= %s") % _num(lo)
    if hi is not None:
        return " <= %s" % _num(hi)
    return ""


def _num(x):
    return ("%g" % x) if isinstance(x, float) else str(x)


# --------------------------------------------------------------------------- input

class Input:
    """One decoded request, as handed to an algorithm function.

    ``data`` is the flat float64 array (read-only view of the frame bytes), ``shape`` a tuple
    ``(n,)`` or ``(n, d)``; ``matrix`` is True when the engine sent a 2-D shape (even d == 1).
    """

    def __init__(self, algorithm, data, shape, target, texts, params, defaults, progress=None):
        self.algorithm = algorithm
        # progress(fraction, detail) when the engine asked for progress frames, else None
        self._progress = progress
        self.data = data
        self.shape = tuple(shape)
        self.matrix = len(self.shape) == 2
        self.target = target
        self.texts = texts
        self.p = Params(params, defaults)
        self._nan_checked = False

    @property
    def wants_progress(self):
        """True when the engine asked for progress frames: an algorithm may then work in increments."""
        return self._progress is not None

    def report_progress(self, fraction, detail=""):
        """Report how far the computation is (0..1) and what it did (e.g. "40 of 100 trees").

        A no-op unless the engine asked for progress; the worker bounds the rate of the frames it sends."""
        if self._progress is not None:
            self._progress(min(1.0, max(0.0, float(fraction))), str(detail))

    @property
    def n(self):
        return self.shape[0]

    # -- NaN/Inf policy: the engine checks too, but the worker does not trust it.
    def _finite_rows(self, X, y, allow_omit=True, return_index=False):
        policy = self.p.get_str("nan_policy", "raise").strip().lower()
        if policy not in ("raise", "omit"):
            raise InvalidArgument("param 'nan_policy' must be one of raise, omit, got %r" % self.p.get_str("nan_policy"))
        bad = ~np.isfinite(X)
        if bad.ndim == 2:
            bad = bad.any(axis=1)
        if y is not None:
            bad = bad | ~np.isfinite(y)
        nbad = int(np.count_nonzero(bad))
        if nbad == 0:
            if return_index:
                return X, y, np.arange(X.shape[0])
            return X, y
        if policy == "raise" or not allow_omit:
            first = int(np.flatnonzero(bad)[0])
            what = "row" if X.ndim == 2 else "index"
            hint = ("pass nan_policy=omit to drop them" if allow_omit else
                    "%s cannot drop points (it would shift the time axis)" % self.algorithm)
            raise InvalidArgument("data contains %d non-finite value%s (NaN/Inf), first at %s %d; %s"
                                  % (nbad, "" if nbad == 1 else "s", what, first, hint))
        keep = ~bad
        if return_index:
            return X[keep], (y[keep] if y is not None else None), np.flatnonzero(keep)
        return X[keep], (y[keep] if y is not None else None)

    def series(self, min_points=0, what=None, allow_omit=True, with_index=False):
        """The data as a 1-D float64 array (shape [n] or [n, 1]), NaN policy applied.

        With ``with_index`` returns ``(x, idx)``: idx are the original positions of the kept points.
        """
        if self.matrix and self.shape[1] != 1:
            raise InvalidArgument("%s expects a series (1-D data), got shape [%d, %d]"
                                  % (what or self.algorithm, self.shape[0], self.shape[1]))
        x, _, idx = self._finite_rows(self.data, None, allow_omit=allow_omit, return_index=True)
        if len(x) < min_points:
            raise InvalidArgument("%s needs at least %d data point%s, got %d"
                                  % (what or self.algorithm, min_points, "" if min_points == 1 else "s", len(x)))
        return (x, idx) if with_index else x

    def matrix2d(self):
        """The data as an (n, d) array; 1-D data becomes one column. No NaN policy applied."""
        if self.matrix:
            return self.data.reshape(self.shape)
        return self.data.reshape(-1, 1)

    def features_target(self, min_points=2, series_mode="index"):
        """(X, y, source) for supervised algorithms.

        * 1-D data without a target vector: the series is fitted against its index
          (X = [[0], [1], ...], y = data), like the old engine.
        * 1-D data with a target vector: X = data as one feature column, y = target.
        * matrix [n, d] with a target vector: X = matrix, y = target.
        * matrix [n, d] with param ``target`` = column index c: y = column c, X = the other columns.
        """
        has_col = self.p.has("target")
        if not self.matrix:
            if has_col:
                raise InvalidArgument("param 'target' (a column index) needs matrix data with shape [n, d]; "
                                      "1-D data is fitted against its index")
            if self.target is not None:
                X, y, source = self.data.reshape(-1, 1), self.target, "data~target"
            else:
                X = np.arange(len(self.data), dtype=np.float64).reshape(-1, 1)
                X, y, source = X, self.data, "index"
        else:
            M = self.data.reshape(self.shape)
            d = self.shape[1]
            if self.target is not None and has_col:
                raise InvalidArgument("give either a target vector or param 'target' (a column index), not both")
            if self.target is not None:
                X, y, source = M, self.target, "target"
            elif has_col:
                c = self.p.int("target", min=0, max=d - 1)
                if d < 2:
                    raise InvalidArgument("param 'target'=%d leaves no feature columns (matrix has %d column)" % (c, d))
                y = M[:, c]
                X = np.delete(M, c, axis=1)
                source = "column %d" % c
            else:
                raise InvalidArgument("%s on a matrix needs a target vector or param 'target' (a column index)"
                                      % self.algorithm)
        X, y = self._finite_rows(X, y)
        if X.shape[0] < min_points:
            raise InvalidArgument("%s needs at least %d data points, got %d" % (self.algorithm, min_points, X.shape[0]))
        return X, y, source

    def points(self, min_points=1, with_index=False):
        """(n, d) matrix for unsupervised algorithms, NaN policy applied (rows dropped on omit)."""
        X = self.matrix2d()
        X, _, idx = self._finite_rows(X, None, return_index=True)
        if X.shape[0] < min_points:
            raise InvalidArgument("%s needs at least %d data point%s, got %d"
                                  % (self.algorithm, min_points, "" if min_points == 1 else "s", X.shape[0]))
        if X.shape[1] < 1:
            raise InvalidArgument("%s needs at least 1 column, got shape [%d, 0]" % (self.algorithm, X.shape[0]))
        return (X, idx) if with_index else X

    def documents(self, min_docs=1, param_names=("text",)):
        """Texts from the ``texts`` field, else from the given string params (old engine)."""
        if self.texts:
            labelled = [("texts[%d]" % i, t) for i, t in enumerate(self.texts)]
        else:
            labelled = [("param '%s'" % k, self.p.raw[k]) for k in param_names if self.p.raw.get(k) is not None]
        if len(labelled) < min_docs:
            names = " and ".join("'%s'" % k for k in param_names)
            raise InvalidArgument("%s needs %d text%s: send 'texts' or param%s %s"
                                  % (self.algorithm, min_docs, "" if min_docs == 1 else "s",
                                     "" if len(param_names) == 1 else "s", names))
        for label, t in labelled:
            if not t.strip():
                raise InvalidArgument("%s: %s is empty" % (self.algorithm, label))
        return [t for _, t in labelled]

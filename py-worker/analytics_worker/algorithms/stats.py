"""Python versions of the native statistics (same names and semantics as the Java kernels).

Definitions (the Java side implements exactly these):
  mean, median, min, max, range         >= 1 point
  std, variance                         sample (ddof = 1), >= 2 points
  percentile                            numpy 'linear' interpolation, param percentile in [0, 100], default 50
  q1, q3, iqr                           percentile 25 / 75 / (75 - 25)
  mode                                  the earlier engine's binning: x * 1e6 rounded half away from
                                        zero (-0.0 -> 0.0, values too large to scale are their own bin);
                                        each mode is the last raw value seen in its bin;
                                        {modes (ascending), count, frequency, is_multimodal, data_size}
  skewness                              bias-corrected (scipy.stats.skew(bias=False)), >= 3 points
  kurtosis                              bias-corrected excess (scipy.stats.kurtosis(bias=False)), >= 4 points
  count                                 integer, >= 1 point
  correlation                           lag-1 autocorrelation with the global mean m (the earlier
                                        engine's formula): sum (x_i - m)(x_i+1 - m) / sum (x_i - m)^2,
                                        >= 2 points; 0.0 for constant data
  summary                               object, >= 2 points
Skewness/kurtosis of (numerically) constant data are 0.0 (as the earlier engine answered), also inside
summary. The zero-variance test is scipy's: m2 <= (1e-15 * mean)**2 (m2 = biased 2nd moment).
A result beyond the double range is an INVALID_ARGUMENT ("... overflows double precision ..."), never
Infinity; inside summary, autocorr/skewness/kurtosis that overflow (and skewness/kurtosis with too few
points) are null.
This mirrors engine/.../stats/NativeStatistics.java (messages included).
"""

import math

import numpy as np

from ..catalogue import Number, params
from ..core import InvalidArgument, algorithm

NAN_POLICY = {"nan_policy": "raise"}
_RESOLUTION = np.finfo(np.float64).resolution  # 1e-15, as scipy.stats uses


def _x(inp, need, name=None):
    return inp.series(min_points=need, what=name)


# ---------------------------------------------------------------- pure kernels (also used by tests)

def _overflow(name):
    return InvalidArgument("%s overflows double precision for these data (values too large in magnitude)" % name)


def _finite(name, v):
    if not math.isfinite(v):
        raise _overflow(name)
    return v


def mean_of(x):
    with np.errstate(over="ignore", invalid="ignore"):
        m = float(np.mean(x))
        if not math.isfinite(m) and len(x):
            # the running sum overflowed although every value is finite: average scaled values
            scale = 2.0 ** -64
            m = float(np.sum(x * scale)) / len(x) / scale
    return m


def _deviation_sums(x, high=True):
    """Sums of powers of d = x - m about the rounded mean m (numpy's pairwise summation order)."""
    m = mean_of(x)
    with np.errstate(over="ignore", invalid="ignore"):
        d = x - m
        d2 = d * d
        sums = [float(np.sum(d)), float(np.sum(d2))]
        if high:
            sums += [float(np.sum(d2 * d)), float(np.sum(d2 * d2))]
    return m, sums


def _central_moments(n, sums):
    """Population central moments m2, m3, m4 shifted exactly from the rounded mean m to the true
    mean m + delta (delta = mean(d)), as the native kernel does."""
    delta = sums[0] / n
    r2, r3, r4 = sums[1] / n, sums[2] / n, sums[3] / n
    dd = delta * delta
    with np.errstate(over="ignore", invalid="ignore"):
        m2 = r2 - dd
        m3 = r3 - 3 * delta * r2 + 2 * dd * delta
        m4 = r4 - 4 * delta * r3 + 6 * dd * r2 - 3 * dd * dd
    return m2, m3, m4


def sample_var(x):
    """Corrected two-pass sample variance: (sum d^2 - (sum d)^2 / n) / (n - 1)."""
    n = len(x)
    _, sums = _deviation_sums(x, high=False)
    with np.errstate(over="ignore", invalid="ignore"):
        return (sums[1] - sums[0] * sums[0] / n) / (n - 1)


def sample_std(x):
    v = sample_var(x)
    return math.sqrt(v) if math.isfinite(v) else v


def percentile(x, q):
    return float(np.percentile(x, q))


def _constant(m, m2):
    return m2 <= (_RESOLUTION * m) ** 2


def skewness_value(x):
    """scipy.stats.skew(bias=False); None when (numerically) constant, inf when it overflows."""
    n = len(x)
    m, sums = _deviation_sums(x)
    m2, m3, _ = _central_moments(n, sums)
    if not math.isfinite(m2):
        return math.inf
    if _constant(m, m2):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            v = math.sqrt((n - 1.0) * n) / (n - 2.0) * m3 / m2 ** 1.5
        except OverflowError:
            v = math.inf
    return v if math.isfinite(v) else math.inf


def kurtosis_value(x):
    """scipy.stats.kurtosis(bias=False) (excess); None when constant, inf when it overflows."""
    n = len(x)
    m, sums = _deviation_sums(x)
    m2, _, m4 = _central_moments(n, sums)
    if not math.isfinite(m2):
        return math.inf
    if _constant(m, m2):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            v = 1.0 / (n - 2) / (n - 3) * ((n * n - 1.0) * m4 / m2 ** 2.0 - 3 * (n - 1.0) ** 2) + 3.0 - 3.0
        except OverflowError:
            v = math.inf
    return v if math.isfinite(v) else math.inf


def _finite_or_none(v):
    return v if v is not None and math.isfinite(v) else None


def autocorr_value(x):
    """Lag-1 autocorrelation with the global mean (the earlier engine's definition):
    sum_{i<n-1} (x_i - m)(x_{i+1} - m) / sum (x_i - m)^2 for n >= 2, both sums shifted exactly from
    the rounded mean to the true one (as the variance); 0.0 for constant data, inf on overflow."""
    n = len(x)
    if x.min() == x.max():
        return 0.0
    m = mean_of(x)
    with np.errstate(over="ignore", invalid="ignore"):
        d = x - m
        s0 = float(np.sum(d))
        s1 = float(np.sum(d * d))
        p = float(np.sum(d[:-1] * d[1:]))
        delta = s0 / n
        num = p - delta * ((s0 - float(d[-1])) + (s0 - float(d[0]))) + (n - 1) * delta * delta
        den = s1 - s0 * s0 / n
    if not (math.isfinite(num) and math.isfinite(den)):
        return math.inf
    if not den > 0:
        return 0.0
    return max(-1.0, min(1.0, num / den))


def mode_bins(x):
    """The earlier engine's mode bins: x * 1e6 rounded half away from zero, / 1e6 (so bins sort like
    the values); -0.0 -> 0.0; values too large to scale by 1e6 are integers and their own bin."""
    with np.errstate(over="ignore", invalid="ignore"):
        y = x * 1e6
        t = np.trunc(y)  # y - t is exact
        r = np.where(np.abs(y - t) >= 0.5, t + np.sign(y), t) / 1e6
    big = ~np.isfinite(y)
    if big.any():
        r = np.where(big, x, r)
    return r + 0.0


def mode_result(x):
    bins = mode_bins(x)
    values, inverse, counts = np.unique(bins, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    last = np.full(len(values), -1, dtype=np.int64)
    np.maximum.at(last, inverse, np.arange(len(x), dtype=np.int64))  # last position in each bin
    top = int(counts.max())
    modes = x[last[counts == top]]  # the last raw value seen in each most frequent bin
    return {
        "modes": [float(v) for v in modes],
        "count": int(len(modes)),
        "frequency": top,
        "is_multimodal": bool(len(modes) > 1),
        "data_size": int(len(x)),
    }


# ---------------------------------------------------------------- registered statistics

@algorithm("mean", "Arithmetic mean", optional=NAN_POLICY)
def mean(inp):
    return _finite("mean", mean_of(_x(inp, 1)))


@algorithm("median", "Median (50th percentile)", optional=NAN_POLICY)
def median(inp):
    return _finite("median", float(_quiet(np.median, _x(inp, 1))))


@algorithm("std", "Sample standard deviation (n-1)", optional=NAN_POLICY)
def std(inp):
    return _finite("std", sample_std(_x(inp, 2)))


@algorithm("variance", "Sample variance (n-1)", optional=NAN_POLICY)
def variance(inp):
    return _finite("variance", sample_var(_x(inp, 2)))


@algorithm("min", "Minimum", optional=NAN_POLICY)
def minimum(inp):
    return float(np.min(_x(inp, 1)))


@algorithm("max", "Maximum", optional=NAN_POLICY)
def maximum(inp):
    return float(np.max(_x(inp, 1)))


@algorithm("range", "Maximum minus minimum", optional=NAN_POLICY)
def value_range(inp):
    x = _x(inp, 1)
    return _finite("range", float(np.max(x)) - float(np.min(x)))


@params(percentile=Number(min=0.0, max=100.0, help="0..100"))
@algorithm("percentile", "Percentile with linear interpolation (numpy default)",
           optional={"percentile": "50", **NAN_POLICY})
def percentile_alg(inp):
    raw = inp.p.raw.get("percentile")
    if raw is not None and not raw.strip():  # as the native kernel: only an absent param means 50
        raise InvalidArgument("param 'percentile' must be a number between 0 and 100, got %r" % raw)
    q = inp.p.float("percentile", min=0.0, max=100.0)
    return _finite("percentile", _quiet(percentile, _x(inp, 1), q))


@algorithm("q1", "First quartile (25th percentile)", optional=NAN_POLICY)
def q1(inp):
    return _finite("q1", _quiet(percentile, _x(inp, 1), 25.0))


@algorithm("q3", "Third quartile (75th percentile)", optional=NAN_POLICY)
def q3(inp):
    return _finite("q3", _quiet(percentile, _x(inp, 1), 75.0))


@algorithm("iqr", "Interquartile range (q3 - q1)", optional=NAN_POLICY)
def iqr(inp):
    x = _x(inp, 1)
    return _finite("iqr", _quiet(percentile, x, 75.0) - _quiet(percentile, x, 25.0))


@algorithm("mode", "Most frequent value(s), values binned at 6 decimals (half away from zero)", optional=NAN_POLICY)
def mode(inp):
    return mode_result(_x(inp, 1))


@algorithm("skewness", "Bias-corrected sample skewness", optional=NAN_POLICY)
def skewness(inp):
    v = skewness_value(_x(inp, 3))
    return 0.0 if v is None else _finite("skewness", v)  # constant data: 0.0, as the earlier engine


@algorithm("kurtosis", "Bias-corrected sample excess kurtosis", optional=NAN_POLICY)
def kurtosis(inp):
    v = kurtosis_value(_x(inp, 4))
    return 0.0 if v is None else _finite("kurtosis", v)  # constant data: 0.0, as the earlier engine


@algorithm("count", "Number of data points", optional=NAN_POLICY)
def count(inp):
    return int(len(_x(inp, 1)))


@algorithm("correlation", "Lag-1 autocorrelation with the global mean (as the earlier engine)",
           optional=NAN_POLICY)
def correlation(inp):
    return _finite("correlation", autocorr_value(_x(inp, 2)))


@algorithm("summary", "Descriptive summary object", optional=NAN_POLICY)
def summary(inp):
    x = _x(inp, 2)
    n = len(x)
    q25, q50, q75 = (float(v) for v in _quiet(np.percentile, x, [25.0, 50.0, 75.0]))
    lo = float(np.min(x))
    hi = float(np.max(x))
    var = sample_var(x)
    out = {
        "count": int(n),
        "mean": mean_of(x),
        "median": q50,
        "std": math.sqrt(var) if math.isfinite(var) else var,
        "variance": var,
        "min": lo,
        "max": hi,
        "range": hi - lo,
        "q25": q25,
        "q75": q75,
    }
    for k, v in out.items():
        if isinstance(v, float):
            _finite("summary", v)
    # too few points or beyond double range: null, not an error; constant data: 0.0
    out["autocorr"] = _finite_or_none(autocorr_value(x))
    out["skewness"] = _finite_or_none(_zero_if_none(skewness_value(x))) if n >= 3 else None
    out["kurtosis"] = _finite_or_none(_zero_if_none(kurtosis_value(x))) if n >= 4 else None
    return out


def _zero_if_none(v):
    return 0.0 if v is None else v


def _quiet(fn, *args):
    """Run a numpy computation with overflow warnings silenced (the caller checks finiteness)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return fn(*args)

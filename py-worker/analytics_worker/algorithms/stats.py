"""Python versions of the native statistics (same names and semantics as the Java kernels).

Definitions (the Java side implements exactly these):
  mean, median, min, max, range         >= 1 point
  std, variance                         sample (ddof = 1), >= 2 points
  percentile                            numpy 'linear' interpolation, param percentile in [0, 100], default 50
  q1, q3, iqr                           percentile 25 / 75 / (75 - 25)
  mode                                  values rounded with numpy.round(x, 6) (= rint(x * 1e6) / 1e6);
                                        {modes (ascending), count, frequency, is_multimodal, data_size}
  skewness                              bias-corrected (scipy.stats.skew(bias=False)), >= 3 points
  kurtosis                              bias-corrected excess (scipy.stats.kurtosis(bias=False)), >= 4 points
  count                                 integer (0 for empty data)
  correlation                           lag-1 autocorrelation: Pearson r of x[:-1] and x[1:], >= 3 points
  summary                               object, >= 2 points
Skewness/kurtosis of (numerically) constant data are undefined: INVALID_ARGUMENT as a scalar, null
inside summary. The zero-variance test is scipy's: m2 <= (1e-15 * mean)**2 (m2 = biased 2nd moment).
"""

import math

import numpy as np

from ..core import InvalidArgument, algorithm

NAN_POLICY = {"nan_policy": "raise"}
_RESOLUTION = np.finfo(np.float64).resolution  # 1e-15, as scipy.stats uses


def _x(inp, need, name=None):
    return inp.series(min_points=need, what=name)


# ---------------------------------------------------------------- pure kernels (also used by tests)

def sample_std(x):
    return float(np.std(x, ddof=1))


def sample_var(x):
    return float(np.var(x, ddof=1))


def percentile(x, q):
    return float(np.percentile(x, q))


def _moments(x):
    m = float(np.mean(x))
    dev = x - m
    m2 = float(np.mean(dev ** 2))
    return m, dev, m2


def _constant(m, m2):
    return m2 <= (_RESOLUTION * m) ** 2


def skewness_or_none(x):
    n = len(x)
    m, dev, m2 = _moments(x)
    if _constant(m, m2):
        return None
    m3 = float(np.mean(dev ** 3))
    g1 = m3 / m2 ** 1.5
    return math.sqrt((n - 1.0) * n) / (n - 2.0) * g1


def kurtosis_or_none(x):
    n = len(x)
    m, dev, m2 = _moments(x)
    if _constant(m, m2):
        return None
    m4 = float(np.mean(dev ** 4))
    g2 = m4 / (m2 * m2)
    return 3.0 + 1.0 / (n - 2) / (n - 3) * ((n * n - 1.0) * g2 - 3 * (n - 1.0) ** 2) - 3.0


def autocorr_or_none(x):
    a = x[:-1]
    b = x[1:]
    da = a - a.mean()
    db = b - b.mean()
    saa = float(np.dot(da, da))
    sbb = float(np.dot(db, db))
    if saa == 0.0 or sbb == 0.0:
        return None
    r = float(np.dot(da, db)) / math.sqrt(saa * sbb)
    return max(-1.0, min(1.0, r))


def mode_result(x):
    r = np.round(x, 6)
    values, counts = np.unique(r, return_counts=True)
    top = int(counts.max())
    modes = values[counts == top]
    return {
        "modes": [float(v) + 0.0 for v in modes],  # + 0.0 turns -0.0 into 0.0
        "count": int(len(modes)),
        "frequency": top,
        "is_multimodal": bool(len(modes) > 1),
        "data_size": int(len(x)),
    }


# ---------------------------------------------------------------- registered statistics

@algorithm("mean", "Arithmetic mean", optional=NAN_POLICY)
def mean(inp):
    return float(np.mean(_x(inp, 1)))


@algorithm("median", "Median (50th percentile)", optional=NAN_POLICY)
def median(inp):
    return float(np.median(_x(inp, 1)))


@algorithm("std", "Sample standard deviation (n-1)", optional=NAN_POLICY)
def std(inp):
    return sample_std(_x(inp, 2))


@algorithm("variance", "Sample variance (n-1)", optional=NAN_POLICY)
def variance(inp):
    return sample_var(_x(inp, 2))


@algorithm("min", "Minimum", optional=NAN_POLICY)
def minimum(inp):
    return float(np.min(_x(inp, 1)))


@algorithm("max", "Maximum", optional=NAN_POLICY)
def maximum(inp):
    return float(np.max(_x(inp, 1)))


@algorithm("range", "Maximum minus minimum", optional=NAN_POLICY)
def value_range(inp):
    x = _x(inp, 1)
    return float(np.max(x) - np.min(x))


@algorithm("percentile", "Percentile with linear interpolation (numpy default)",
           optional={"percentile": "50", **NAN_POLICY})
def percentile_alg(inp):
    q = inp.p.float("percentile", min=0.0, max=100.0)
    return percentile(_x(inp, 1), q)


@algorithm("q1", "First quartile (25th percentile)", optional=NAN_POLICY)
def q1(inp):
    return percentile(_x(inp, 1), 25.0)


@algorithm("q3", "Third quartile (75th percentile)", optional=NAN_POLICY)
def q3(inp):
    return percentile(_x(inp, 1), 75.0)


@algorithm("iqr", "Interquartile range (q3 - q1)", optional=NAN_POLICY)
def iqr(inp):
    x = _x(inp, 1)
    return percentile(x, 75.0) - percentile(x, 25.0)


@algorithm("mode", "Most frequent value(s), values rounded to 6 decimals", optional=NAN_POLICY)
def mode(inp):
    return mode_result(_x(inp, 1))


@algorithm("skewness", "Bias-corrected sample skewness", optional=NAN_POLICY)
def skewness(inp):
    v = skewness_or_none(_x(inp, 3))
    if v is None:
        raise InvalidArgument("skewness is undefined for constant data")
    return v


@algorithm("kurtosis", "Bias-corrected sample excess kurtosis", optional=NAN_POLICY)
def kurtosis(inp):
    v = kurtosis_or_none(_x(inp, 4))
    if v is None:
        raise InvalidArgument("kurtosis is undefined for constant data")
    return v


@algorithm("count", "Number of data points", optional=NAN_POLICY)
def count(inp):
    return int(len(_x(inp, 0)))


@algorithm("correlation", "Lag-1 autocorrelation (Pearson r of x[:-1] and x[1:])", optional=NAN_POLICY)
def correlation(inp):
    v = autocorr_or_none(_x(inp, 3))
    if v is None:
        raise InvalidArgument("lag-1 autocorrelation is undefined for constant data")
    return v


@algorithm("summary", "Descriptive summary object", optional=NAN_POLICY)
def summary(inp):
    x = _x(inp, 2)
    n = len(x)
    q25, q50, q75 = (float(v) for v in np.percentile(x, [25.0, 50.0, 75.0]))
    lo = float(np.min(x))
    hi = float(np.max(x))
    return {
        "count": int(n),
        "mean": float(np.mean(x)),
        "median": q50,
        "std": sample_std(x),
        "variance": sample_var(x),
        "min": lo,
        "max": hi,
        "range": hi - lo,
        "q25": q25,
        "q75": q75,
        "autocorr": autocorr_or_none(x) if n >= 3 else None,
        "skewness": skewness_or_none(x) if n >= 3 else None,
        "kurtosis": kurtosis_or_none(x) if n >= 4 else None,
    }

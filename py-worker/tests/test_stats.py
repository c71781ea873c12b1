"""Parity of the Python statistics with the numpy/scipy definitions the native side uses."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from inproc import error, run

RNG = np.random.default_rng(42)
DATASETS = {
    "small": [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0],
    "normal": RNG.normal(10.0, 3.0, 500).tolist(),
    "skewed": RNG.exponential(2.0, 301).tolist(),
    "negative": [-5.5, -1.25, 0.0, 3.75, 12.5, -7.0, 2.0],
    "big_offset": (1e9 + RNG.normal(0, 1, 100)).tolist(),
}
ALL = list(DATASETS)


def close(a, b, rel=1e-12, abs_=1e-12):
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def global_lag1(x):
    """The earlier engine's lag-1 autocorrelation (global mean), exactly."""
    from fractions import Fraction
    fx = [Fraction(float(v)) for v in x]
    m = sum(fx) / len(fx)
    d = [v - m for v in fx]
    return float(sum(a * b for a, b in zip(d[:-1], d[1:])) / sum(v * v for v in d))


def exact_moment_stats(x):
    """Bias-corrected skewness and excess kurtosis computed exactly (fractions) from the float64 data.

    scipy's one-pass-mean formulas lose ~5 digits on data like 1e9 + N(0, 1); the worker (and the
    native kernels) must match the exact value, so that is the reference here.
    """
    from fractions import Fraction
    n = len(x)
    fx = [Fraction(float(v)) for v in x]
    m = sum(fx) / n
    m2 = sum((v - m) ** 2 for v in fx) / n
    m3 = sum((v - m) ** 3 for v in fx) / n
    m4 = sum((v - m) ** 4 for v in fx) / n
    g1 = float(m3) / float(m2) ** 1.5
    g2 = float(m4 / (m2 * m2))
    skew = g1 * ((n - 1.0) * n) ** 0.5 / (n - 2.0)
    kurt = 1.0 / (n - 2) / (n - 3) * ((n * n - 1.0) * g2 - 3 * (n - 1.0) ** 2)
    return skew, kurt


@pytest.mark.parametrize("ds", ALL)
def test_scalar_stats_match_numpy_scipy(ds):
    x = np.array(DATASETS[ds])
    expect = {
        "mean": np.mean(x),
        "median": np.median(x),
        "std": np.std(x, ddof=1),
        "variance": np.var(x, ddof=1),
        "min": np.min(x),
        "max": np.max(x),
        "range": np.ptp(x),
        "q1": np.percentile(x, 25),
        "q3": np.percentile(x, 75),
        "iqr": np.percentile(x, 75) - np.percentile(x, 25),
        "skewness": exact_moment_stats(x)[0],
        "kurtosis": exact_moment_stats(x)[1],
        "correlation": global_lag1(x),
    }
    for name, want in expect.items():
        got = run(name, x)
        assert isinstance(got, float), name
        tol = 1e-9 if name in ("skewness", "kurtosis", "correlation") else 1e-12
        assert close(got, float(want), rel=tol, abs_=tol), (name, got, want)
    assert run("count", x) == len(x) and isinstance(run("count", x), int)
    # and on well-conditioned data the exact reference is scipy's definition
    if ds != "big_offset":
        assert close(run("skewness", x), float(sps.skew(x, bias=False)), rel=1e-9, abs_=1e-9)
        assert close(run("kurtosis", x), float(sps.kurtosis(x, bias=False)), rel=1e-9, abs_=1e-9)


@pytest.mark.parametrize("q", ["0", "12.5", "50", "99.9", "100"])
def test_percentile_linear(q):
    x = np.array(DATASETS["skewed"])
    assert close(run("percentile", x, params={"percentile": q}), float(np.percentile(x, float(q))))


def test_percentile_default_is_median():
    x = DATASETS["normal"]
    assert run("percentile", x) == run("median", x)


@pytest.mark.parametrize("bad", ["abc", "-1", "100.5", "nan", "inf", "", "1_0", "0x10", "1e3"])
def test_percentile_bad_param(bad):
    code, msg = error("percentile", [1.0, 2.0], params={"percentile": bad})
    assert code == "INVALID_ARGUMENT"
    assert msg == "param 'percentile' must be a number between 0 and 100, got %r" % bad


def test_mode_object():
    r = run("mode", [3.0, 1.0, 2.0, 2.0, 3.0, 5.0])
    assert r == {"modes": [2.0, 3.0], "count": 2, "frequency": 2, "is_multimodal": True, "data_size": 6}
    r = run("mode", [1.0000001, 1.0000004, 7.0])  # one bin at 6 decimals; its last raw value
    assert r == {"modes": [1.0000004], "count": 1, "frequency": 2, "is_multimodal": False, "data_size": 3}
    # the earlier engine's binning: half away from zero, the last raw value reported
    r = run("mode", [2.5e-6, 2.5e-6, 3e-6])
    assert r == {"modes": [3e-6], "count": 1, "frequency": 3, "is_multimodal": False, "data_size": 3}
    r = run("mode", [4.0])
    assert r == {"modes": [4.0], "count": 1, "frequency": 1, "is_multimodal": False, "data_size": 1}


def test_mode_matches_half_away_binning_in_input_order():
    x = RNG.normal(0, 1, 1000).round(3) + RNG.integers(-4, 5, 1000) * 1e-8  # jitter inside bins
    r = run("mode", x)
    bins = {}
    for v in x.tolist():
        y = v * 1e6
        key = math.floor(abs(y) + 0.5) * (1 if y >= 0 else -1)  # exact enough: no ties here
        cnt, _ = bins.get(key, (0, None))
        bins[key] = (cnt + 1, v)
    best = max(c for c, _ in bins.values())
    assert r["modes"] == [last for _, (c, last) in sorted(bins.items()) if c == best]
    assert r["frequency"] == best


def test_summary_matches_definitions():
    x = np.array(DATASETS["normal"])
    s = run("summary", x)
    assert list(s) == ["count", "mean", "median", "std", "variance", "min", "max", "range", "q25", "q75",
                       "autocorr", "skewness", "kurtosis"]
    assert s["count"] == 500
    for key in ("mean", "median", "std", "variance", "min", "max", "range", "q25", "q75", "autocorr",
                "skewness", "kurtosis"):
        name = {"q25": "q1", "q75": "q3", "autocorr": "correlation"}.get(key, key)
        assert close(s[key], run(name, x), rel=1e-12), key


def test_summary_small_and_constant():
    s = run("summary", [1.0, 2.0])
    assert s["autocorr"] == -0.5 and s["skewness"] is None and s["kurtosis"] is None
    s = run("summary", [5.0] * 6)  # constant: 0.0, as the earlier engine
    assert s["std"] == 0.0 and s["autocorr"] == 0.0 and s["skewness"] == 0.0 and s["kurtosis"] == 0.0
    s = run("summary", [1.0, 2.0, 4.0])
    assert s["autocorr"] is not None and s["skewness"] is not None and s["kurtosis"] is None


@pytest.mark.parametrize("name,need", [
    ("mean", 1), ("median", 1), ("min", 1), ("max", 1), ("range", 1), ("percentile", 1), ("q1", 1),
    ("q3", 1), ("iqr", 1), ("mode", 1), ("std", 2), ("variance", 2), ("summary", 2), ("skewness", 3),
    ("correlation", 2), ("kurtosis", 4), ("count", 1),
])
def test_too_few_points(name, need):
    code, msg = error(name, [1.0, 2.0, 3.0][: need - 1])
    assert code == "INVALID_ARGUMENT"
    assert msg == "%s needs at least %d data point%s, got %d" % (name, need, "" if need == 1 else "s", need - 1)


def test_constant_data_gives_zero_like_the_earlier_engine():
    for name in ("correlation", "skewness", "kurtosis"):
        assert run(name, [2.0] * 5) == 0.0, name
    assert run("correlation", [1.0, 2.0, 4.0]) == pytest.approx(-1 / 42, rel=1e-15)
    assert run("correlation", [3.0, 5.0]) == -0.5


def test_nan_policy():
    x = [1.0, float("nan"), 3.0, float("-inf"), 5.0]
    code, msg = error("mean", x)
    assert code == "INVALID_ARGUMENT" and "2 non-finite values" in msg and "first at index 1" in msg
    assert run("mean", x, params={"nan_policy": "omit"}) == 3.0
    assert run("count", x, params={"nan_policy": "omit"}) == 3
    assert error("mean", x, params={"nan_policy": "ignore"})[1].startswith("param 'nan_policy' must be one of")


def test_matrix_input_for_statistics():
    assert run("mean", [1.0, 2.0, 3.0], shape=[3, 1]) == 2.0
    code, msg = error("mean", [1.0, 2.0, 3.0, 4.0], shape=[2, 2])
    assert msg == "mean expects a series (1-D data), got shape [2, 2]"


def test_overflow_is_an_error_not_infinity():
    msg = "variance overflows double precision for these data (values too large in magnitude)"
    assert error("variance", [1.5e308, -1.6e308, 1.7e308]) == ("INVALID_ARGUMENT", msg)
    assert run("mean", [1.5e308, 1.6e308, 1.7e308]) == 1.6e308  # the sum overflows, the mean does not
    assert error("summary", [1.5e308, -1.6e308, 1.7e308])[1].startswith("summary overflows double precision")


def test_mode_keeps_values_too_large_to_round():
    r = run("mode", [1e303, 1e303, 5.0])
    assert r["modes"] == [1e303] and r["frequency"] == 2
    assert run("mode", [-0.0, 0.0, 1.0])["modes"] == [0.0]

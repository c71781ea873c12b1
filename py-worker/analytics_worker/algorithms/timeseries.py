"""Time-series algorithms: ARIMA and seasonal decomposition (statsmodels, imported lazily),
Mann-Kendall trend test with Theil-Sen slope, and anomaly detection."""

import math
import warnings

import numpy as np

from ..catalogue import Choice, Int, IntList, Number, params
from ..core import InvalidArgument, algorithm

THEIL_SEN_EXACT_MAX_N = 3000     # exact Theil-Sen needs n(n-1)/2 pairwise slopes
THEIL_SEN_SAMPLE_PAIRS = 2000000  # above that: median over a deterministic random sample of pairs


def _warning_texts(caught):
    out = []
    for w in caught:
        text = "%s: %s" % (w.category.__name__, str(w.message).splitlines()[0] if str(w.message) else "")
        if text not in out:
            out.append(text)
    return out[:10]


# ------------------------------------------------------------------------------------------ ARIMA

def _parse_order(inp):
    raw = inp.p.get_str("order")
    parts = [p.strip() for p in raw.replace("(", "").replace(")", "").split(",")]
    msg = "param 'order' must be three non-negative integers 'p,d,q' (p, q <= 20, d <= 3), got %r" % raw
    if len(parts) != 3:
        raise InvalidArgument(msg)
    try:
        p, d, q = (int(x) for x in parts)
    except ValueError:
        raise InvalidArgument(msg)
    if min(p, d, q) < 0 or p > 20 or q > 20 or d > 3:
        raise InvalidArgument(msg)
    return p, d, q


ARIMA_MAXITER = 50  # statsmodels' default for the L-BFGS fit of ARIMA (MLEModel.fit maxiter)


def _arima_progress(inp):
    """fit() kwargs that report the optimizer's iterations (of at most ARIMA_MAXITER) when progress is asked.

    The callback only observes: the fit and its result are the same with or without it (tested)."""
    if not inp.wants_progress:
        return {}
    done = [0]

    def iteration(params):
        done[0] += 1
        inp.report_progress(min(done[0], ARIMA_MAXITER - 1) / ARIMA_MAXITER,
                            "optimizer iteration %d (of at most %d)" % (done[0], ARIMA_MAXITER))

    return {"method_kwargs": {"callback": iteration, "maxiter": ARIMA_MAXITER}}


@params(min_points=5, order=IntList(help="p,d,q (p, q <= 20, d <= 3); needs max(5, p+d+q+3) points"),
        periods=Int(min=1, max=100000, help="steps to forecast"),
        alpha=Number(min=0.0, max=1.0, min_exclusive=True, help="1 - confidence level of the intervals"))
@algorithm("arima", "ARIMA(p,d,q) fit and forecast with confidence intervals (statsmodels)",
           optional={"order": "1,1,1", "periods": "5", "alpha": "0.05"})
def arima(inp):
    order = _parse_order(inp)
    periods = inp.p.int("periods", min=1, max=100000)
    alpha = inp.p.float("alpha", min=0.0, max=1.0, min_exclusive=True)
    if alpha >= 1.0:
        raise InvalidArgument("param 'alpha' must be a number > 0 and < 1, got %r" % inp.p.get_str("alpha"))
    p, d, q = order
    need = max(5, p + q + d + 3)
    y = inp.series(min_points=need, allow_omit=False, what="arima%s" % (order,))
    from numpy.linalg import LinAlgError
    from statsmodels.tsa.arima.model import ARIMA
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = ARIMA(y, order=order).fit(**_arima_progress(inp))
            fc = res.get_forecast(steps=periods)
            mean = np.asarray(fc.predicted_mean)
            ci = np.asarray(fc.conf_int(alpha=alpha))
        except (ValueError, LinAlgError) as e:
            raise InvalidArgument("arima: cannot fit ARIMA%s to this series: %s" % (order, e))
    return {
        "forecast": mean,
        "conf_int_lower": ci[:, 0],
        "conf_int_upper": ci[:, 1],
        "alpha": alpha,
        "order": list(order),
        "periods": periods,
        "model": "ARIMA(%d,%d,%d)" % order,
        "residuals": np.asarray(res.resid),
        "aic": float(res.aic),
        "bic": float(res.bic),
        "params": dict(zip(res.param_names, np.asarray(res.params).tolist())),
        "n_observations": int(len(y)),
        "warnings": _warning_texts(caught),
    }


# ---------------------------------------------------------------------------- seasonal_decompose

def detect_period(y):
    """Seasonal period from the autocorrelation function of the linearly detrended series: the lag
    (2..n/2) of the highest local maximum with positive autocorrelation. None if there is none."""
    n = len(y)
    t = np.arange(n, dtype=np.float64)
    slope, intercept = np.polyfit(t, y, 1)
    x = y - (slope * t + intercept)
    x = x - x.mean()
    denom = float(np.dot(x, x))
    if n < 6 or denom == 0.0:
        return None
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x, size)
    acf = np.fft.irfft(f * np.conj(f), size)[: n // 2 + 2] / denom
    best, best_val = None, 0.0
    for lag in range(2, min(n // 2, len(acf) - 1) + 1):
        if lag + 1 >= len(acf):
            break
        v = acf[lag]
        if v > acf[lag - 1] and v >= acf[lag + 1] and v > best_val:
            best, best_val = lag, v
    return best


@params(min_points=4, period=Int(min=2, words=("auto",), help="season length (auto = detected; needs 2 full periods)"),
        model=Choice("additive", "multiplicative", help="additive or multiplicative"),
        extrapolate_trend=Int(min=0, words=("freq", "period"),
                              help="points to extrapolate the trend at each end (freq = period - 1; 0 = NaN there)"))
@algorithm("seasonal_decompose", "Classical seasonal decomposition by moving averages (statsmodels); "
                                 "period defaults to 4 as in the earlier engine, period=auto detects it "
                                 "from the autocorrelation",
           optional={"period": "4", "model": "additive", "extrapolate_trend": "freq"})
def seasonal_decompose(inp):
    model = inp.p.choice("model", ("additive", "multiplicative"))
    # "freq" (default; "period" is the same): the trend's edges are extrapolated from the period - 1
    # nearest points, so no array holds NaN (null in JSON), which v7 clients parsing numbers cannot
    # read; 0 keeps statsmodels' NaN edges
    if inp.p.get_str("extrapolate_trend").strip().lower() in ("freq", "period"):
        extrapolate = None  # period - 1 once the period is known (statsmodels' own meaning of "freq")
    else:
        extrapolate = inp.p.int("extrapolate_trend", min=0)
    y = inp.series(min_points=4, allow_omit=False)
    n = len(y)
    raw_period = inp.p.get_str("period").strip().lower()
    requested = None
    if raw_period == "auto":
        period = detect_period(y)
        if period is None:
            raise InvalidArgument("seasonal_decompose could not detect a seasonal period; pass param 'period'")
        detected = True
    else:
        period = inp.p.int("period", min=2)
        detected = False
        if n < 2 * period:
            # the earlier engine's rule, which v7 clients rely on: a period longer than half the series
            # becomes max(2, n // 2); period_requested / period_adjusted say so
            requested = period
            period = max(2, n // 2)
    if model == "multiplicative" and not np.all(y > 0):
        raise InvalidArgument("the multiplicative model needs strictly positive data")
    from statsmodels.tsa.seasonal import seasonal_decompose as sm_decompose
    if extrapolate is None:
        extrapolate = period - 1
    res = sm_decompose(y, model=model, period=period, extrapolate_trend=extrapolate)
    seasonal = np.asarray(res.seasonal)
    return {
        "trend": np.asarray(res.trend),
        "seasonal": seasonal,
        "residual": np.asarray(res.resid),
        "period": period,
        "period_detected": detected,
        "period_adjusted": requested is not None,
        "period_requested": requested if requested is not None else period,
        "model": model,
        "original": y,
        "seasonal_pattern": seasonal[:period],
    }


# -------------------------------------------------------------------------------- trend_analysis

def mann_kendall_s(y):
    """Mann-Kendall S = sum_{i<j} sign(y_j - y_i), exactly, in O(n log n) through Kendall's tau-b."""
    n = len(y)
    n0 = n * (n - 1) // 2
    _, counts = np.unique(y, return_counts=True)
    n1 = int(np.sum(counts * (counts - 1) // 2))
    if n1 == n0:  # constant series
        return 0, counts
    from scipy.stats import kendalltau
    tau_b = float(kendalltau(np.arange(n), y)[0])  # [0]: .correlation (scipy < 1.10) / .statistic
    return int(round(tau_b * math.sqrt(float(n0) * float(n0 - n1)))), counts


def theil_sen(y, x, alpha, random_state=42):
    n = len(y)
    if n <= THEIL_SEN_EXACT_MAX_N:
        from scipy.stats import theilslopes
        slope, intercept, low, high = theilslopes(y, x, alpha=1.0 - alpha)[:4]
        return float(slope), float(intercept), [float(low), float(high)], True
    rng = np.random.default_rng(random_state)
    i = rng.integers(0, n, THEIL_SEN_SAMPLE_PAIRS)
    j = rng.integers(0, n, THEIL_SEN_SAMPLE_PAIRS)
    keep = x[i] != x[j]
    i, j = i[keep], j[keep]
    slope = float(np.median((y[j] - y[i]) / (x[j] - x[i])))
    intercept = float(np.median(y) - slope * np.median(x))
    return slope, intercept, None, False


@params(min_points=3, alpha=Number(min=0.0, max=0.5, min_exclusive=True, help="significance level"))
@algorithm("trend_analysis", "Mann-Kendall trend test (with tie correction) and Theil-Sen slope",
           optional={"alpha": "0.05", "nan_policy": "raise"})
def trend_analysis(inp):
    alpha = inp.p.float("alpha", min=0.0, max=0.5, min_exclusive=True)
    y, idx = inp.series(min_points=3, with_index=True)
    n = len(y)
    s, counts = mann_kendall_s(y)
    var_s = (n * (n - 1) * (2 * n + 5) - float(np.sum(counts * (counts - 1) * (2 * counts + 5)))) / 18.0
    if s > 0 and var_s > 0:
        z = (s - 1) / math.sqrt(var_s)
    elif s < 0 and var_s > 0:
        z = (s + 1) / math.sqrt(var_s)
    else:
        z = 0.0
    p = math.erfc(abs(z) / math.sqrt(2.0))  # two-sided normal p-value
    significant = p < alpha
    trend = ("increasing" if z > 0 else "decreasing") if significant else "no trend"
    x = idx.astype(np.float64)  # original positions (gaps from nan_policy=omit keep their place)
    slope, intercept, ci, exact = theil_sen(y, x, alpha)
    return {
        "trend": trend,
        "significant": bool(significant),
        "p_value": p,
        "z_statistic": z,
        "s_statistic": s,
        "var_s": var_s,
        "tau": s / (n * (n - 1) / 2.0),
        "theil_sen_slope": slope,
        "theil_sen_intercept": intercept,
        "theil_sen_slope_ci": ci,
        "theil_sen_exact": exact,
        "alpha": alpha,
        "method": "mann_kendall",
        "n": n,
    }


# ----------------------------------------------------------------------------- anomaly_detection

# zscore, iqr and isolation: 2.0, the earlier engine's default for all three (v7 clients rely on which
# points are flagged); mad: the Iglewicz & Hoaglin cut-off (the earlier engine had no mad)
DEFAULT_THRESHOLDS = {"zscore": 2.0, "iqr": 2.0, "isolation": 2.0, "mad": 3.5}
MAD_SCALE = 0.6745  # Iglewicz & Hoaglin modified z-score


def _ratio(num, den):
    """num/den elementwise; den == 0 gives 0 where num == 0 and +inf elsewhere (null in JSON)."""
    if den > 0:
        return num / den
    return np.where(num == 0, 0.0, np.inf)


@params(min_points=2, method=Choice("zscore", "iqr", "isolation", "mad", "isolation_forest", help="scoring method"),
        threshold=Number(min=0.0, min_exclusive=True, words=("auto",),
                         help="score threshold (auto = 2.0 zscore, iqr and isolation, as the earlier engine; 3.5 mad)"),
        contamination=Number(min=0.0, max=0.5, min_exclusive=True, words=("auto",),
                             help="isolation_forest: share of anomalies (auto = sklearn's offset)"),
        n_estimators=Int(min=1, max=10000, help="isolation_forest: trees"))
@algorithm("anomaly_detection", "Anomaly detection: zscore, iqr, isolation (the earlier engine's methods), mad "
                                "(series) or isolation_forest (series or matrix)", input="matrix",
           optional={"method": "zscore", "threshold": "auto", "contamination": "auto",
                     "n_estimators": "100", "random_state": "42", "nan_policy": "raise"})
def anomaly_detection(inp):
    method = inp.p.choice("method", ("zscore", "iqr", "isolation", "mad", "isolation_forest"))
    extra = {}
    if method == "isolation_forest":
        X, idx = inp.points(2, with_index=True)
        n = X.shape[0]
        raw_c = inp.p.get_str("contamination").strip().lower()
        contamination = "auto" if raw_c == "auto" else inp.p.float("contamination", min=0.0, max=0.5,
                                                                    min_exclusive=True)
        n_estimators = inp.p.int("n_estimators", min=1, max=10000)
        rs = inp.p.int("random_state", min=0, max=2 ** 32 - 1)
        from sklearn.ensemble import IsolationForest
        model = IsolationForest(n_estimators=n_estimators, contamination=contamination, random_state=rs,
                                n_jobs=1).fit(X)
        scores = -model.score_samples(X)  # higher = more anomalous
        flags = model.predict(X) == -1
        threshold = float(-model.offset_)
        extra = {"contamination": contamination, "n_estimators": n_estimators}
    else:
        x, idx = inp.series(min_points=2, with_index=True, what="anomaly_detection method '%s'" % method)
        n = len(x)
        if inp.p.get_str("threshold").strip().lower() == "auto":
            threshold = DEFAULT_THRESHOLDS[method]
        else:
            threshold = inp.p.float("threshold", min=0.0, min_exclusive=True)
        if method == "zscore":
            mean, std = float(np.mean(x)), float(np.std(x))  # population std, as scipy.stats.zscore
            scores = _ratio(np.abs(x - mean), std)
            extra = {"mean": mean, "std": std}
        elif method == "iqr":
            # the earlier engine's scores: distance beyond the fences, in data units
            q1, q3 = (float(v) for v in np.percentile(x, [25.0, 75.0]))
            iqr = q3 - q1
            lower, upper = q1 - threshold * iqr, q3 + threshold * iqr
            scores = np.maximum(np.maximum(lower - x, x - upper), 0.0)
            extra = {"q1": q1, "q3": q3, "iqr": iqr, "lower_bound": lower, "upper_bound": upper}
        elif method == "isolation":
            # the earlier engine's "isolation": the points whose distance from the mean is above the
            # (1 - threshold/10) quantile of those distances (numpy's linear interpolation)
            if threshold > 10.0:
                raise InvalidArgument("method 'isolation' needs a threshold in (0, 10] (it flags the points "
                                      "beyond the 1 - threshold/10 quantile of the distances), got %r"
                                      % inp.p.get_str("threshold"))
            mean = float(np.mean(x))
            scores = np.abs(x - mean)
            cut = float(np.quantile(scores, 1.0 - threshold / 10.0))
            extra = {"mean": mean, "distance_cutoff": cut}
        else:
            med = float(np.median(x))
            mad = float(np.median(np.abs(x - med)))
            scores = _ratio(MAD_SCALE * np.abs(x - med), mad)
            extra = {"median": med, "mad": mad}
        if method == "iqr":
            flags = scores > 0.0
        elif method == "isolation":
            flags = scores > extra["distance_cutoff"]
        else:
            flags = scores > threshold
    anomalies = idx[flags]
    out = {
        "anomalies": anomalies,
        "scores": scores,
        "method": method,
        "threshold": threshold,
        "n_anomalies": int(len(anomalies)),
        "anomaly_rate": float(len(anomalies)) / n,
        "data_length": int(n),
        "anomaly_values": (inp.data[anomalies] if not inp.matrix or inp.shape[1] == 1
                           else inp.matrix2d()[anomalies]),
    }
    out.update(extra)
    return out

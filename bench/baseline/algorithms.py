"""The baseline's algorithms: what a team would write in-process with numpy / scipy / scikit-learn.

Semantics follow the v7 wire contract (and the engine's definitions): sample std/variance (ddof=1),
numpy's default 'linear' percentile, bias-corrected skewness/kurtosis (0.0 for constant data), lag-1
autocorrelation with the global mean, mode binned at 6 decimals half away from zero (the last raw value
of each bin), as the earlier engine answered v7 clients. ML algorithms take 1-D data like
the old engine (k-means clusters the scalars, regression/forest fit the series against its index) or a
row-major matrix with its shape and a target vector.
"""

import math

import numpy as np
from scipy import stats as sps


class BadInput(ValueError):
    """Invalid request: answered with success=false."""


class UnknownAlgorithm(KeyError):
    pass


# ------------------------------------------------------------------------------------------ helpers

def _series(data, need):
    x = np.asarray(data, dtype=np.float64)
    if x.size < need:
        raise BadInput("needs at least %d data points, got %d" % (need, x.size))
    if not np.all(np.isfinite(x)):
        raise BadInput("data contains NaN or infinite values")
    return x


def _matrix(data, shape):
    x = np.asarray(data, dtype=np.float64)
    if len(shape) == 2:
        n, d = int(shape[0]), int(shape[1])
        if n * d != x.size:
            raise BadInput("shape %s does not match %d data values" % (list(shape), x.size))
        return x.reshape(n, d), True
    return x.reshape(-1, 1), False


def _int(params, name, default, lo=None):
    raw = params.get(name, default)
    try:
        v = int(raw)
    except (TypeError, ValueError):
        raise BadInput("param '%s' must be an integer, got %r" % (name, raw))
    if lo is not None and v < lo:
        raise BadInput("param '%s' must be >= %d" % (name, lo))
    return v


def _float(params, name, default):
    raw = params.get(name, default)
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise BadInput("param '%s' must be a number, got %r" % (name, raw))


def _autocorr(x):
    """Lag-1 autocorrelation with the global mean (the earlier engine's, as the engine); constant -> 0.0."""
    if x.size < 2:
        return None
    d = x - x.mean()
    den = float(np.dot(d, d))
    if den == 0.0:
        return 0.0
    return max(-1.0, min(1.0, float(np.dot(d[:-1], d[1:])) / den))


def _features_target(data, shape, target, params):
    X, matrix = _matrix(data, shape)
    if target:
        y = np.asarray(target, dtype=np.float64)
        if y.size != X.shape[0]:
            raise BadInput("target has %d values for %d rows" % (y.size, X.shape[0]))
        return X, y
    if matrix and params.get("target", "") != "":
        col = _int(params, "target", "0", lo=0)
        if col >= X.shape[1]:
            raise BadInput("target column %d out of range" % col)
        return np.delete(X, col, axis=1), X[:, col]
    # 1-D: fit the series against its index, as the old engine did
    y = X[:, 0]
    return np.arange(y.size, dtype=np.float64).reshape(-1, 1), y


def _regression_metrics(y, pred):
    mse = float(np.mean((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = (1.0 if mse == 0.0 else 0.0) if ss_tot == 0.0 else 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot
    return mse, r2


# ------------------------------------------------------------------------------------- statistics

def _summary(x):
    q25, q50, q75 = np.percentile(x, [25.0, 50.0, 75.0])
    lo, hi = float(np.min(x)), float(np.max(x))
    return {
        "count": int(x.size), "mean": float(np.mean(x)), "median": float(q50),
        "std": float(np.std(x, ddof=1)), "variance": float(np.var(x, ddof=1)),
        "min": lo, "max": hi, "range": hi - lo, "q25": float(q25), "q75": float(q75),
        "autocorr": _autocorr(x),
    }


def _mode(x):
    # the earlier engine's bins (x*1e6 rounded half away from zero), each mode the last raw value in its bin
    y = x * 1e6
    bins = np.sign(y) * np.floor(np.abs(y) + 0.5)
    values, inverse, counts = np.unique(bins, return_inverse=True, return_counts=True)
    last = np.full(values.size, -1)
    np.maximum.at(last, inverse.reshape(-1), np.arange(x.size))
    top = int(counts.max())
    modes = x[last[counts == top]]
    return {"modes": [float(v) for v in modes], "count": int(modes.size), "frequency": top,
            "is_multimodal": bool(modes.size > 1), "data_size": int(x.size)}


def _skew(x):
    v = float(sps.skew(x, bias=False))
    return v if math.isfinite(v) else 0.0  # constant data, as the engine


def _kurt(x):
    v = float(sps.kurtosis(x, bias=False))
    return v if math.isfinite(v) else 0.0


def _corr(x):
    return _autocorr(x)


def _percentile(x, params):
    q = _float(params, "percentile", "50")
    if not 0.0 <= q <= 100.0:
        raise BadInput("param 'percentile' must be in [0, 100]")
    return float(np.percentile(x, q))


# name -> (minimum points, function(x, params))
STATS = {
    "mean": (1, lambda x, p: float(np.mean(x))),
    "median": (1, lambda x, p: float(np.median(x))),
    "std": (2, lambda x, p: float(np.std(x, ddof=1))),
    "variance": (2, lambda x, p: float(np.var(x, ddof=1))),
    "min": (1, lambda x, p: float(np.min(x))),
    "max": (1, lambda x, p: float(np.max(x))),
    "range": (1, lambda x, p: float(np.ptp(x))),
    "percentile": (1, _percentile),
    "q1": (1, lambda x, p: float(np.percentile(x, 25))),
    "q3": (1, lambda x, p: float(np.percentile(x, 75))),
    "iqr": (1, lambda x, p: float(np.percentile(x, 75) - np.percentile(x, 25))),
    "mode": (1, lambda x, p: _mode(x)),
    "skewness": (3, lambda x, p: _skew(x)),
    "kurtosis": (4, lambda x, p: _kurt(x)),
    "count": (0, lambda x, p: int(x.size)),
    "correlation": (2, lambda x, p: _corr(x)),
    "summary": (2, lambda x, p: _summary(x)),
}


# --------------------------------------------------------------------------------------------- ML

def kmeans(data, shape, target, params):
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    k = _int(params, "k", "3", lo=1)
    X, _ = _matrix(data, shape)
    if k > X.shape[0]:
        raise BadInput("k=%d exceeds the number of points (%d)" % (k, X.shape[0]))
    rs = _int(params, "random_state", "42", lo=0)
    km = KMeans(n_clusters=k, max_iter=_int(params, "max_iter", "300", lo=1),
                n_init=_int(params, "n_init", "10", lo=1), random_state=rs).fit(X)
    labels = km.labels_
    n_labels = len(np.unique(labels))
    sil = 0.0
    if 2 <= n_labels <= X.shape[0] - 1:
        if X.shape[0] > 10000:
            sil = float(silhouette_score(X, labels, sample_size=10000, random_state=rs))
        else:
            sil = float(silhouette_score(X, labels))
    return {"clusters": labels.tolist(), "centers": km.cluster_centers_.tolist(), "n_clusters": k,
            "inertia": float(km.inertia_), "silhouette_score": sil, "n_iter": int(km.n_iter_),
            "cluster_sizes": np.bincount(labels, minlength=k).tolist()}


def dbscan(data, shape, target, params):
    from sklearn.cluster import DBSCAN
    X, _ = _matrix(data, shape)
    eps = _float(params, "eps", "0.5")
    min_samples = _int(params, "min_samples", "5", lo=1)
    db = DBSCAN(eps=eps, min_samples=min_samples).fit(X)
    labels = db.labels_
    return {"clusters": labels.tolist(), "n_clusters": len(set(labels.tolist()) - {-1}),
            "n_noise_points": int(np.count_nonzero(labels == -1)), "eps": eps, "min_samples": min_samples,
            "core_samples": db.core_sample_indices_.tolist()}


def pca(data, shape, target, params):
    from sklearn.decomposition import PCA
    X, matrix = _matrix(data, shape)
    if not matrix:
        y = X[:, 0]
        X = np.column_stack([y, np.roll(y, 1)])
        X = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    nc = _int(params, "n_components", str(min(2, *X.shape)), lo=1)
    model = PCA(n_components=nc, svd_solver="full")
    T = model.fit_transform(X)
    return {"transformed_data": T.tolist(), "explained_variance_ratio": model.explained_variance_ratio_.tolist(),
            "explained_variance": model.explained_variance_.tolist(), "components": model.components_.tolist(),
            "n_components": nc, "total_variance_explained": float(np.sum(model.explained_variance_ratio_))}


def linear_regression(data, shape, target, params):
    from sklearn.linear_model import LinearRegression
    fit_intercept = params.get("fit_intercept", "true").lower() not in ("false", "0", "no")
    X, y = _features_target(data, shape, target, params)
    model = LinearRegression(fit_intercept=fit_intercept).fit(X, y)
    pred = model.predict(X)
    mse, r2 = _regression_metrics(y, pred)
    return {"coefficients": model.coef_.tolist(), "intercept": float(model.intercept_),
            "predictions": pred.tolist(), "mse": mse, "r2_score": r2, "rmse": math.sqrt(mse),
            "fit_intercept": fit_intercept}


def random_forest(data, shape, target, params):
    from sklearn.ensemble import RandomForestRegressor
    n_estimators = _int(params, "n_estimators", "100", lo=1)
    md = params.get("max_depth", "none").strip().lower()
    max_depth = None if md in ("none", "null", "0") else _int(params, "max_depth", None, lo=1)
    X, y = _features_target(data, shape, target, params)
    model = RandomForestRegressor(n_estimators=n_estimators, max_depth=max_depth,
                                  random_state=_int(params, "random_state", "42", lo=0),
                                  oob_score=True, bootstrap=True, n_jobs=1).fit(X, y)
    pred = model.predict(X)
    mse, r2 = _regression_metrics(y, pred)
    return {"predictions": pred.tolist(), "feature_importances": model.feature_importances_.tolist(),
            "n_estimators": n_estimators, "max_depth": max_depth, "mse": mse, "r2_score": r2,
            "rmse": math.sqrt(mse), "oob_score": float(model.oob_score_)}


def anomaly_detection(data, shape, target, params):
    x = _series(data, 2)
    method = params.get("method", "zscore")
    if method == "zscore":
        threshold = _float(params, "threshold", "2.0") if params.get("threshold", "auto") != "auto" else 2.0
        sd = float(np.std(x, ddof=1))
        scores = np.abs(x - x.mean()) / sd if sd > 0 else np.zeros_like(x)
    elif method == "iqr":
        threshold = _float(params, "threshold", "2.0") if params.get("threshold", "auto") != "auto" else 2.0
        q1, q3 = np.percentile(x, [25, 75])
        iqr = q3 - q1
        scores = np.maximum(q1 - threshold * iqr - x, x - q3 - threshold * iqr).clip(min=0)
    else:
        raise BadInput("method must be zscore or iqr in the baseline, got %r" % method)
    anomalies = np.flatnonzero(scores > (0.0 if method == "iqr" else threshold))
    return {"anomalies": anomalies.tolist(),
            "scores": [None if not math.isfinite(s) else float(s) for s in scores.tolist()],
            "method": method, "threshold": threshold, "n_anomalies": int(anomalies.size),
            "anomaly_rate": float(anomalies.size / x.size), "data_length": int(x.size)}


ML = {
    "kmeans": kmeans,
    "dbscan": dbscan,
    "pca": pca,
    "linear_regression": linear_regression,
    "random_forest": random_forest,
    "anomaly_detection": anomaly_detection,
}


def run(algorithm, data, shape, target, params):
    """Computes one analysis; returns (implementation, result object)."""
    if algorithm in STATS:
        need, fn = STATS[algorithm]
        if shape and len(shape) == 2 and int(shape[1]) != 1:
            raise BadInput("%s needs a 1-D series" % algorithm)
        return "native", fn(_series(data, need), params)
    if algorithm in ML:
        if len(data) == 0:
            raise BadInput("no data")
        return "python", ML[algorithm](data, shape, target, params)
    raise UnknownAlgorithm(algorithm)

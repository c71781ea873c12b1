"""Each algorithm against direct library calls on fixed data, and its bad-input errors."""

import math
import warnings

import numpy as np
import pytest

from inproc import error, run

RNG = np.random.default_rng(42)
BLOBS = np.vstack([RNG.normal(c, 0.4, size=(40, 3)) for c in ((0, 0, 0), (4, 4, 0), (0, 5, 5))])
SERIES = np.array([2.0, 3.1, 2.9, 4.2, 5.0, 4.8, 6.1, 7.2, 6.8, 8.1, 9.0, 8.7, 10.2, 11.1, 10.7, 12.3])
SEASONAL = 10 + 0.2 * np.arange(72) + 3 * np.sin(np.arange(72) * 2 * np.pi / 12) + RNG.normal(0, 0.3, 72)


def assert_close(a, b, tol=1e-9):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=tol, atol=tol)


# ----------------------------------------------------------------------------------- kmeans

def test_kmeans_matrix_matches_sklearn():
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    r = run("kmeans", BLOBS.ravel(), shape=BLOBS.shape, params={"k": "3"})
    km = KMeans(n_clusters=3, max_iter=300, n_init=10, random_state=42).fit(BLOBS)
    assert r["clusters"] == km.labels_.tolist()
    assert_close(r["centers"], km.cluster_centers_)
    assert r["n_clusters"] == 3 and r["n_iter"] == km.n_iter_
    assert_close(r["inertia"], km.inertia_)
    assert_close(r["silhouette_score"], silhouette_score(BLOBS, km.labels_))
    assert sum(r["cluster_sizes"]) == len(BLOBS)


def test_kmeans_scalars_like_old_engine():
    from sklearn.cluster import KMeans
    x = [1.0, 1.2, 0.8, 9.0, 9.5, 10.0]
    r = run("kmeans", x, params={"k": "2", "random_state": "7", "max_iter": "50"})
    km = KMeans(n_clusters=2, max_iter=50, n_init=10, random_state=7).fit(np.array(x).reshape(-1, 1))
    assert r["clusters"] == km.labels_.tolist()
    assert len(set(r["clusters"][:3])) == 1 and r["clusters"][0] != r["clusters"][3]


def test_kmeans_deterministic():
    a = run("kmeans", BLOBS.ravel(), shape=BLOBS.shape, params={"k": "4"})
    b = run("kmeans", BLOBS.ravel(), shape=BLOBS.shape, params={"k": "4"})
    assert a == b


@pytest.mark.parametrize("params,msg", [
    ({"k": "10"}, "k=10 exceeds the number of points (5)"),
    ({"k": "abc"}, "param 'k' must be an integer >= 1, got 'abc'"),
    ({"k": "0"}, "param 'k' must be an integer >= 1, got '0'"),
    ({"k": "2.5"}, "param 'k' must be an integer >= 1, got '2.5'"),
    ({"k": "2", "max_iter": "-3"}, "param 'max_iter' must be an integer between 1 and 100000, got '-3'"),
])
def test_kmeans_bad_input(params, msg):
    assert error("kmeans", [1.0, 2.0, 3.0, 4.0, 5.0], params=params) == ("INVALID_ARGUMENT", msg)


def test_kmeans_like_the_earlier_engine_k_defaults_to_3_and_silhouette_is_a_number():
    r = run("kmeans", [1.0, 1.1, 5.0, 5.2, 9.0, 9.1])
    assert r["n_clusters"] == 3 and len(set(r["clusters"])) == 3
    # k = 1 and k = n: the silhouette is undefined; the earlier engine answered 0.0 (never null)
    r = run("kmeans", [1.0, 2.0, 3.0], params={"k": "1"})
    assert r["silhouette_score"] == 0.0 and r["clusters"] == [0, 0, 0]
    assert run("kmeans", [1.0, 2.0, 3.0], params={"k": "3"})["silhouette_score"] == 0.0


# ----------------------------------------------------------------------------------- dbscan

def test_dbscan_matches_sklearn():
    from sklearn.cluster import DBSCAN
    r = run("dbscan", BLOBS.ravel(), shape=BLOBS.shape, params={"eps": "0.9", "min_samples": "4"})
    db = DBSCAN(eps=0.9, min_samples=4).fit(BLOBS)
    assert r["clusters"] == db.labels_.tolist()
    assert r["core_samples"] == db.core_sample_indices_.tolist()
    assert r["n_clusters"] == len(set(db.labels_) - {-1})
    assert r["n_noise_points"] == int((db.labels_ == -1).sum())
    assert r["eps"] == 0.9 and r["min_samples"] == 4


def test_dbscan_defaults_and_bad_eps():
    r = run("dbscan", [1.0, 1.1, 1.2, 1.3, 1.4, 8.0])
    assert r["clusters"] == [0, 0, 0, 0, 0, -1] and r["eps"] == 0.5 and r["min_samples"] == 5
    assert error("dbscan", [1.0, 2.0], params={"eps": "0"})[1] == "param 'eps' must be a number > 0, got '0'"
    assert error("dbscan", [1.0, 2.0], params={"eps": "x"})[1] == "param 'eps' must be a number > 0, got 'x'"


# -------------------------------------------------------------------------------------- pca

def test_pca_matrix_matches_sklearn():
    from sklearn.decomposition import PCA
    r = run("pca", BLOBS.ravel(), shape=BLOBS.shape, params={"n_components": "2"})
    p = PCA(n_components=2, svd_solver="full")
    T = p.fit_transform(BLOBS)
    assert_close(r["transformed_data"], T)
    assert_close(r["explained_variance_ratio"], p.explained_variance_ratio_)
    assert_close(r["explained_variance"], p.explained_variance_)
    assert_close(r["components"], p.components_)
    assert r["n_components"] == 2
    assert_close(r["total_variance_explained"], p.explained_variance_ratio_.sum())


def test_pca_1d_uses_standardised_lag_columns_like_the_earlier_engine():
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler
    r = run("pca", SERIES)
    x = np.asarray(SERIES)
    X = StandardScaler().fit_transform(np.column_stack([x, np.concatenate([[x[-1]], x[:-1]])]))
    p = PCA(n_components=2, svd_solver="full")
    assert_close(r["transformed_data"], p.fit_transform(X))
    assert_close(r["explained_variance_ratio"], p.explained_variance_ratio_)
    assert r["input"] == "x,x_shifted_standardised"


def test_pca_bad_n_components():
    assert error("pca", BLOBS.ravel(), shape=BLOBS.shape, params={"n_components": "4"})[1] == \
        "n_components=4 exceeds min(n_samples, n_features) = 3"


# ------------------------------------------------------------------------ linear_regression

def test_linear_regression_series_on_index():
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_squared_error, r2_score
    r = run("linear_regression", SERIES)
    X = np.arange(len(SERIES)).reshape(-1, 1)
    m = LinearRegression().fit(X, SERIES)
    pred = m.predict(X)
    assert_close(r["coefficients"], m.coef_)
    assert_close(r["intercept"], m.intercept_)
    assert_close(r["predictions"], pred)
    assert_close(r["mse"], mean_squared_error(SERIES, pred))
    assert_close(r["r2_score"], r2_score(SERIES, pred))
    assert_close(r["rmse"], math.sqrt(mean_squared_error(SERIES, pred)))
    assert r["fit_intercept"] is True


def test_linear_regression_matrix_with_target_vector_and_column():
    from sklearn.linear_model import LinearRegression
    X = BLOBS[:, :2]
    y = 3 * X[:, 0] - 2 * X[:, 1] + RNG.normal(0, 0.1, len(X))
    r = run("linear_regression", X.ravel(), shape=X.shape, target=y, params={"fit_intercept": "false"})
    m = LinearRegression(fit_intercept=False).fit(X, y)
    assert_close(r["coefficients"], m.coef_)
    assert r["intercept"] == 0.0 and r["fit_intercept"] is False
    M = np.column_stack([X, y])
    r2 = run("linear_regression", M.ravel(), shape=M.shape, params={"target": "2", "fit_intercept": "false"})
    assert_close(r2["coefficients"], m.coef_)


@pytest.mark.parametrize("kwargs,msg", [
    ({"data": [1.0, 2.0, 3.0, 4.0], "shape": [2, 2]},
     "linear_regression on a matrix needs a target vector or param 'target' (a column index)"),
    ({"data": [1.0, 2.0, 3.0, 4.0], "shape": [2, 2], "params": {"target": "2"}},
     "param 'target' must be an integer between 0 and 1, got '2'"),
    ({"data": [1.0, 2.0, 3.0], "params": {"target": "0"}},
     "param 'target' (a column index) needs matrix data with shape [n, d]; 1-D data is fitted against its index"),
    ({"data": [1.0]}, "linear_regression needs at least 2 data points, got 1"),
    ({"data": [1.0, 2.0], "params": {"fit_intercept": "maybe"}},
     "param 'fit_intercept' must be true or false, got 'maybe'"),
])
def test_linear_regression_bad_input(kwargs, msg):
    assert error("linear_regression", **kwargs) == ("INVALID_ARGUMENT", msg)


# ---------------------------------------------------------------------------- random_forest

def test_random_forest_regression_matches_sklearn():
    from sklearn.ensemble import RandomForestRegressor
    r = run("random_forest", SERIES, params={"n_estimators": "25", "max_depth": "4"})
    X = np.arange(len(SERIES)).reshape(-1, 1).astype(float)
    m = RandomForestRegressor(n_estimators=25, max_depth=4, random_state=42, oob_score=True).fit(X, SERIES)
    assert_close(r["predictions"], m.predict(X))
    assert_close(r["feature_importances"], m.feature_importances_)
    assert_close(r["oob_score"], m.oob_score_)
    assert r["task"] == "regression" and r["n_estimators"] == 25 and r["max_depth"] == 4
    for key in ("mse", "r2_score", "rmse"):
        assert isinstance(r[key], float)


def test_random_forest_classifier_for_integral_target():
    from sklearn.ensemble import RandomForestClassifier
    labels = np.repeat([0.0, 1.0, 2.0], 40)
    r = run("random_forest", BLOBS.ravel(), shape=BLOBS.shape, target=labels, params={"n_estimators": "20"})
    m = RandomForestClassifier(n_estimators=20, random_state=42, oob_score=True).fit(BLOBS, labels)
    assert r["task"] == "classification"
    assert r["classes"] == [0.0, 1.0, 2.0]
    assert_close(r["predictions"], m.predict(BLOBS))
    assert_close(r["oob_score"], m.oob_score_)
    assert r["accuracy"] == 1.0


def test_random_forest_bad_params():
    assert error("random_forest", SERIES, params={"n_estimators": "many"})[1] == \
        "param 'n_estimators' must be an integer between 1 and 10000, got 'many'"
    assert error("random_forest", SERIES, params={"max_depth": "-1"})[1] == \
        "param 'max_depth' must be an integer between 1 and 10000, got '-1'"
    assert error("random_forest", BLOBS.ravel(), shape=BLOBS.shape, target=BLOBS[:, 0],
                 params={"task": "classification"})[1] == "task=classification needs integer class labels as target"


# ------------------------------------------------------------------------------------ arima

def test_arima_matches_statsmodels():
    from statsmodels.tsa.arima.model import ARIMA
    r = run("arima", SEASONAL, params={"order": "2,1,1", "periods": "6"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = ARIMA(SEASONAL, order=(2, 1, 1)).fit()
    # the worker reports fit warnings in the result instead of printing them
    assert r["warnings"] == sorted(set(r["warnings"]), key=r["warnings"].index)
    assert len(r["warnings"]) == len({(w.category, str(w.message)) for w in caught})
    fc = res.get_forecast(6)
    assert_close(r["forecast"], fc.predicted_mean, 1e-7)
    ci = fc.conf_int(alpha=0.05)
    assert_close(r["conf_int_lower"], ci[:, 0], 1e-7)
    assert_close(r["conf_int_upper"], ci[:, 1], 1e-7)
    assert_close(r["aic"], res.aic, 1e-7)
    assert_close(r["bic"], res.bic, 1e-7)
    assert_close(r["residuals"], res.resid, 1e-7)
    assert r["order"] == [2, 1, 1] and r["periods"] == 6 and r["model"] == "ARIMA(2,1,1)"


@pytest.mark.parametrize("params,msg", [
    ({"order": "1,1"}, "param 'order' must be three non-negative integers 'p,d,q' (p, q <= 20, d <= 3), got '1,1'"),
    ({"order": "a,b,c"}, "param 'order' must be three non-negative integers 'p,d,q' (p, q <= 20, d <= 3), got 'a,b,c'"),
    ({"periods": "0"}, "param 'periods' must be an integer between 1 and 100000, got '0'"),
])
def test_arima_bad_params(params, msg):
    assert error("arima", SEASONAL, params=params) == ("INVALID_ARGUMENT", msg)


def test_arima_too_short_and_nan_omit_refused():
    assert error("arima", [1.0, 2.0, 3.0])[1] == "arima(1, 1, 1) needs at least 6 data points, got 3"
    code, msg = error("arima", list(SEASONAL[:20]) + [float("nan")], params={"nan_policy": "omit"})
    assert "arima cannot drop points" in msg


# ------------------------------------------------------------------------ seasonal_decompose

@pytest.mark.parametrize("model", ["additive", "multiplicative"])
def test_seasonal_decompose_matches_statsmodels(model):
    from statsmodels.tsa.seasonal import seasonal_decompose
    r = run("seasonal_decompose", SEASONAL, params={"period": "12", "model": model})
    res = seasonal_decompose(SEASONAL, model=model, period=12, extrapolate_trend=11)  # = "freq"
    for key, want in (("trend", res.trend), ("seasonal", res.seasonal), ("residual", res.resid)):
        assert all(isinstance(v, float) for v in r[key]), key  # no null: v7 clients parse numbers
        assert_close(np.array(r[key]), want)
    assert r["period"] == 12 and r["model"] == model and r["original"] == SEASONAL.tolist()
    assert r["period_adjusted"] is False
    # extrapolate_trend=0 keeps statsmodels' NaN edges (null) for those who ask
    r0 = run("seasonal_decompose", SEASONAL, params={"period": "12", "model": model, "extrapolate_trend": "0"})
    assert r0["trend"][0] is None


def test_seasonal_decompose_detects_period():
    r = run("seasonal_decompose", SEASONAL, params={"period": "auto"})
    assert r["period"] == 12 and r["period_detected"] is True


def test_seasonal_decompose_v7_period_default_and_adjustment():
    r = run("seasonal_decompose", SEASONAL)
    assert r["period"] == 4 and r["period_detected"] is False and r["period_adjusted"] is False
    # the earlier engine: a period longer than half the series becomes max(2, n // 2), said in extra keys
    r = run("seasonal_decompose", SEASONAL[:20], params={"period": "12"})
    assert r["period"] == 10 and r["period_requested"] == 12 and r["period_adjusted"] is True
    r = run("seasonal_decompose", [1.0, 3.0, 2.0, 4.0, 3.0], params={"period": "7"})
    assert r["period"] == 2 and all(isinstance(v, float) for v in r["trend"] + r["residual"])


def test_seasonal_decompose_bad_input():
    assert error("seasonal_decompose", SEASONAL - 20, params={"period": "12", "model": "multiplicative"})[1] == \
        "the multiplicative model needs strictly positive data"
    assert error("seasonal_decompose", SEASONAL, params={"model": "fancy"})[1] == \
        "param 'model' must be one of additive, multiplicative, got 'fancy'"
    assert error("seasonal_decompose", [1.0] * 30, params={"period": "auto"})[1] == \
        "seasonal_decompose could not detect a seasonal period; pass param 'period'"


# ---------------------------------------------------------------------------- trend_analysis

def _mk_brute(y):
    n = len(y)
    s = sum(np.sign(y[j] - y[i]) for i in range(n) for j in range(i + 1, n))
    _, t = np.unique(y, return_counts=True)
    var = (n * (n - 1) * (2 * n + 5) - np.sum(t * (t - 1) * (2 * t + 5))) / 18.0
    z = (s - 1) / math.sqrt(var) if s > 0 else (s + 1) / math.sqrt(var) if s < 0 else 0.0
    return int(s), var, z


@pytest.mark.parametrize("y", [SERIES, SEASONAL, np.round(RNG.normal(0, 1, 80), 1), SERIES[::-1]])
def test_trend_analysis_mann_kendall_and_theil_sen(y):
    from scipy.stats import norm, theilslopes
    r = run("trend_analysis", y)
    s, var, z = _mk_brute(np.asarray(y))
    assert r["s_statistic"] == s
    assert_close(r["var_s"], var)
    assert_close(r["z_statistic"], z)
    assert_close(r["p_value"], 2 * norm.sf(abs(z)))
    ts = theilslopes(y, np.arange(len(y)), alpha=0.95)
    assert_close(r["theil_sen_slope"], ts.slope)
    assert_close(r["theil_sen_intercept"], ts.intercept)
    assert r["method"] == "mann_kendall" and r["alpha"] == 0.05
    want = ("increasing" if z > 0 else "decreasing") if r["p_value"] < 0.05 else "no trend"
    assert r["trend"] == want and r["significant"] == (r["p_value"] < 0.05)


def test_trend_analysis_directions_and_constant():
    assert run("trend_analysis", SERIES)["trend"] == "increasing"
    assert run("trend_analysis", SERIES[::-1])["trend"] == "decreasing"
    r = run("trend_analysis", [3.0] * 10)
    assert r["trend"] == "no trend" and r["s_statistic"] == 0 and r["p_value"] == 1.0
    assert error("trend_analysis", SERIES, params={"alpha": "2"})[1] == \
        "param 'alpha' must be a number > 0 and <= 0.5, got '2'"


def test_trend_analysis_large_series_is_sampled_theil_sen():
    from scipy.stats import kendalltau
    y = 0.01 * np.arange(5000) + RNG.normal(0, 1, 5000)
    r = run("trend_analysis", y)
    tau = kendalltau(np.arange(5000), y)[0]  # no ties in y: tau-b == tau-a
    assert_close(r["tau"], tau)
    assert r["theil_sen_exact"] is False and abs(r["theil_sen_slope"] - 0.01) < 0.001


# ------------------------------------------------------------------------- anomaly_detection

SPIKY = np.concatenate([RNG.normal(10, 1, 100), [25.0, -8.0]])


def test_anomaly_zscore_matches_scipy():
    from scipy.stats import zscore
    r = run("anomaly_detection", SPIKY)
    z = np.abs(zscore(SPIKY))
    assert_close(r["scores"], z)
    assert r["anomalies"] == np.flatnonzero(z > 2.0).tolist()  # the earlier engine's default 2.0
    assert r["method"] == "zscore" and r["threshold"] == 2.0
    assert r["n_anomalies"] == len(r["anomalies"]) and r["data_length"] == 102
    assert math.isclose(r["anomaly_rate"], len(r["anomalies"]) / 102, rel_tol=1e-12)


def test_anomaly_iqr_and_mad_definitions():
    q1, q3 = np.percentile(SPIKY, [25, 75])
    r = run("anomaly_detection", SPIKY, params={"method": "iqr", "threshold": "1.5"})
    lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    want = np.flatnonzero((SPIKY < lo) | (SPIKY > hi)).tolist()
    assert r["anomalies"] == want and 100 in want and 101 in want
    # scores: distance beyond the fences in data units (the earlier engine's)
    assert_close(r["scores"], np.maximum(np.maximum(lo - SPIKY, SPIKY - hi), 0.0))
    assert run("anomaly_detection", SPIKY, params={"method": "iqr"})["threshold"] == 2.0
    med = np.median(SPIKY)
    mad = np.median(np.abs(SPIKY - med))
    r = run("anomaly_detection", SPIKY, params={"method": "mad"})
    m = 0.6745 * np.abs(SPIKY - med) / mad
    assert_close(r["scores"], m)
    assert r["anomalies"] == np.flatnonzero(m > 3.5).tolist() and r["threshold"] == 3.5


def test_anomaly_isolation_is_the_earlier_engines_distance_quantile():
    r = run("anomaly_detection", SPIKY, params={"method": "isolation"})
    d = np.abs(SPIKY - SPIKY.mean())
    assert r["threshold"] == 2.0 and r["method"] == "isolation"
    assert r["anomalies"] == np.flatnonzero(d > np.quantile(d, 0.8)).tolist()
    assert_close(r["scores"], d)
    assert error("anomaly_detection", SPIKY, params={"method": "isolation", "threshold": "11"})[1].startswith(
        "method 'isolation' needs a threshold in (0, 10]")


def test_anomaly_isolation_forest_matches_sklearn():
    from sklearn.ensemble import IsolationForest
    X = np.vstack([BLOBS[:40], [[8.0, -6.0, 9.0]]])
    r = run("anomaly_detection", X.ravel(), shape=X.shape, params={"method": "isolation_forest"})
    m = IsolationForest(n_estimators=100, contamination="auto", random_state=42).fit(X)
    assert_close(r["scores"], -m.score_samples(X))
    assert r["anomalies"] == np.flatnonzero(m.predict(X) == -1).tolist()
    assert 40 in r["anomalies"]


def test_anomaly_nan_omit_keeps_original_indices():
    x = list(SPIKY[:100]) + [float("nan"), 40.0]
    r = run("anomaly_detection", x, params={"nan_policy": "omit"})
    assert r["anomalies"] == [101] and r["anomaly_values"] == [40.0] and r["data_length"] == 101


def test_anomaly_bad_input():
    assert error("anomaly_detection", SPIKY, params={"method": "magic"})[1] == \
        "param 'method' must be one of zscore, iqr, isolation, mad, isolation_forest, got 'magic'"
    assert error("anomaly_detection", BLOBS.ravel(), shape=BLOBS.shape)[1] == \
        "anomaly_detection method 'zscore' expects a series (1-D data), got shape [120, 3]"
    assert error("anomaly_detection", SPIKY, params={"threshold": "-1"})[1] == \
        "param 'threshold' must be a number > 0, got '-1'"


def test_anomaly_constant_series_has_no_anomalies():
    r = run("anomaly_detection", [5.0] * 10)
    assert r["n_anomalies"] == 0 and r["scores"] == [0.0] * 10


# ------------------------------------------------------------------------------------- text

def test_sentiment_matches_vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    sia = SentimentIntensityAnalyzer()
    for text, label in (("I love this product, it is wonderful!", "positive"),
                        ("This is terrible and I hate it.", "negative"),
                        ("The box is on the table.", "neutral")):
        r = run("sentiment_analysis", params={"text": text})
        s = sia.polarity_scores(text)
        assert r["sentiment_score"] == s["compound"] and r["sentiment_label"] == label
        assert r["method"] == "vader" and 0.0 <= r["confidence"] <= 1.0
    # the earlier engine's keys, and VADER's reading of negation
    r = run("sentiment_analysis", params={"text": "This is not good at all."})
    assert r["sentiment_label"] == "negative"
    assert (r["positive_words_count"], r["negative_words_count"], r["total_words"]) == (1, 0, 6)
    r = run("sentiment_analysis", params={"text": "Great service, awful food, a good view"})
    assert (r["positive_words_count"], r["negative_words_count"], r["total_words"]) == (2, 1, 7)


def test_sentiment_multiple_texts():
    r = run("sentiment_analysis", texts=["great", "awful", "superb"])
    assert len(r["documents"]) == 3 and r["n_documents"] == 3
    assert (r["positive_words_count"], r["negative_words_count"], r["total_words"]) == (2, 1, 3)
    assert_close(r["sentiment_score"], np.mean([d["sentiment_score"] for d in r["documents"]]))


def test_text_similarity_earlier_engine_methods_and_keys():
    a, b = "the quick brown fox jumps", "The lazy brown dog, the end"
    r = run("text_similarity", params={"text1": a, "text2": b})
    # cosine of raw counts: a = {the, quick, brown, fox, jumps}, b = {the: 2, lazy, brown, dog, end}
    assert_close(r["similarity"], (1 * 2 + 1 * 1) / (math.sqrt(5) * math.sqrt(8)))
    assert r["method"] == "cosine"
    assert (r["text1_words"], r["text2_words"], r["common_words"], r["total_unique_words"]) == (5, 5, 2, 8)
    assert run("text_similarity", params={"text1": a, "text2": a})["similarity"] == 1.0
    r3 = run("text_similarity", texts=[a, b, "brown bread"])
    assert len(r3["similarity_matrix"]) == 3 and r3["similarity_matrix"][0][0] == 1.0
    # one-letter words count (the earlier engine's \b\w+\b)
    assert run("text_similarity", texts=["a b cc dd", "cc dd ee"], params={"method": "jaccard"})["similarity"] == 2 / 5
    lev = run("text_similarity", params={"text1": "kitten", "text2": "sitting", "method": "levenshtein"})
    assert_close(lev["similarity"], 1 - 3 / 7)


def test_text_similarity_tfidf_cosine_matches_sklearn():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity
    a, b = "the quick brown fox jumps", "the lazy brown dog sleeps"
    r = run("text_similarity", params={"text1": a, "text2": b, "method": "tfidf_cosine"})
    M = TfidfVectorizer().fit_transform([a, b])
    assert_close(r["similarity"], cosine_similarity(M)[0, 1])


def test_keyword_extraction_matches_tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer
    text = ("Workers compute analytics. The engine sends analytics requests to workers; "
            "workers answer requests quickly.")
    r = run("keyword_extraction", params={"text": text, "n_keywords": "3"})
    v = TfidfVectorizer(stop_words="english")
    w = v.fit_transform([text]).toarray()[0]
    names = v.get_feature_names_out()
    order = sorted(range(len(names)), key=lambda i: (-w[i], names[i]))[:3]
    assert r["keywords"] == [names[i] for i in order] == ["workers", "analytics", "requests"]
    assert_close(r["scores"], w[order])
    # the earlier engine's counts after stop-word removal ("the", "to"): 12 words, 8 distinct
    assert r["method"] == "tfidf" and r["total_words"] == 12 and r["unique_words"] == 8
    assert r["n_keywords"] == 3
    f = run("keyword_extraction", params={"text": text, "method": "frequency", "n_keywords": "1"})
    assert f["keywords"] == ["workers"] and f["scores"] == [3.0]


@pytest.mark.parametrize("name,kwargs,msg", [
    ("sentiment_analysis", {}, "sentiment_analysis needs 1 text: send 'texts' or param 'text'"),
    ("sentiment_analysis", {"texts": ["fine", "  "]}, "sentiment_analysis: texts[1] is empty"),
    ("keyword_extraction", {"params": {"text": ""}}, "keyword_extraction: param 'text' is empty"),
    ("keyword_extraction", {"params": {"text": "x", "n_keywords": "five"}},
     "param 'n_keywords' must be an integer between 1 and 1000, got 'five'"),
    ("text_similarity", {"params": {"text1": "only one"}},
     "text_similarity needs 2 texts: send 'texts' or params 'text1' and 'text2'"),
    ("text_similarity", {"texts": ["!!", "??"]}, "the texts contain no words to compare (empty vocabulary)"),
])
def test_text_bad_input(name, kwargs, msg):
    assert error(name, **kwargs) == ("INVALID_ARGUMENT", msg)


def test_keyword_extraction_stop_words_only_is_empty_like_the_earlier_engine():
    r = run("keyword_extraction", params={"text": "the and of it"})
    assert r["keywords"] == [] and r["scores"] == [] and r["total_words"] == 0 and r["n_keywords"] == 0


def test_vader_needs_no_network_and_no_requests():
    # the lexicon ships inside the package: works with `requests` unimportable and sockets disabled
    import subprocess
    import sys
    code = (
        "import sys, socket\n"
        "sys.modules['requests'] = None\n"
        "def no_net(*a, **k):\n"
        "    raise AssertionError('network access')\n"
        "socket.socket = no_net\n"
        "socket.create_connection = no_net\n"
        "from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer\n"
        "print(SentimentIntensityAnalyzer().polarity_scores('a wonderful day')['compound'])\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert float(p.stdout) > 0.5

"""Machine-learning algorithms on scikit-learn (imported lazily, on first use).

Input conventions (see README.md):
  * 1-D data (no shape, or shape [n]) behaves like the old engine: k-means/DBSCAN cluster the scalars,
    regression and random forest fit the series against its index 0..n-1, PCA uses the two columns
    [x, x shifted by one (circular)], standardised.
  * matrix data: shape [n, d], row-major. Supervised algorithms take the target from the request's
    target vector, or from param 'target' = a column index (that column is removed from the features).
"""

import warnings

import numpy as np

from ..catalogue import Bool, Choice, Int, Number, params
from ..core import InvalidArgument, algorithm

SILHOUETTE_SAMPLE = 10000
NAN = {"nan_policy": "raise"}


def _random_state(inp):
    return inp.p.int("random_state", min=0, max=2 ** 32 - 1)


@params(min_points=1, k=Int(min=1, help="number of clusters"), max_iter=Int(min=1, max=100000, help="maximum iterations"),
        n_init=Int(min=1, max=1000, help="runs with different centroid seeds; the best is kept"))
@algorithm("kmeans", "K-means clustering (scikit-learn KMeans); k defaults to 3 as in the earlier engine",
           input="matrix", optional={"k": "3", "max_iter": "300", "n_init": "10", "random_state": "42", **NAN})
def kmeans(inp):
    k = inp.p.int("k", min=1)
    max_iter = inp.p.int("max_iter", min=1, max=100000)
    n_init = inp.p.int("n_init", min=1, max=1000)
    rs = _random_state(inp)
    X = inp.points(1)
    n = X.shape[0]
    if k > n:
        raise InvalidArgument("k=%d exceeds the number of points (%d)" % (k, n))
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        # fewer distinct points than k: sklearn warns and still returns k centers
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=k, max_iter=max_iter, n_init=n_init, random_state=rs).fit(X)
    labels = km.labels_
    n_labels = len(np.unique(labels))
    return {
        "clusters": labels,
        "centers": km.cluster_centers_,
        "n_clusters": k,
        "inertia": float(km.inertia_),
        # undefined for k = 1 or k = n: 0.0, the earlier engine's answer (v7 clients parse a number)
        "silhouette_score": _silhouette(X, labels, n_labels, rs) or 0.0,
        "n_iter": int(km.n_iter_),
        "cluster_sizes": np.bincount(labels, minlength=k),
        "n_points": n,
        "n_features": X.shape[1],
    }


def _silhouette(X, labels, n_labels, rs):
    """Silhouette score; None when undefined (fewer than 2 or more than n-1 distinct clusters).

    Above SILHOUETTE_SAMPLE points it is computed on a deterministic sample of that many points.
    """
    n = X.shape[0]
    if n_labels < 2 or n_labels > n - 1:
        return None
    from sklearn.metrics import silhouette_score
    if n > SILHOUETTE_SAMPLE:
        return float(silhouette_score(X, labels, sample_size=SILHOUETTE_SAMPLE, random_state=rs))
    return float(silhouette_score(X, labels))


@params(min_points=1, eps=Number(min=0.0, min_exclusive=True, help="neighbourhood radius"),
        min_samples=Int(min=1, help="points to form a core point"))
@algorithm("dbscan", "Density-based clustering (scikit-learn DBSCAN); label -1 = noise", input="matrix",
           optional={"eps": "0.5", "min_samples": "5", **NAN})
def dbscan(inp):
    eps = inp.p.float("eps", min=0.0, min_exclusive=True)
    min_samples = inp.p.int("min_samples", min=1)
    X = inp.points(1)
    from sklearn.cluster import DBSCAN
    db = DBSCAN(eps=eps, min_samples=min_samples).fit(X)
    labels = db.labels_
    clusters = set(labels.tolist()) - {-1}
    return {
        "clusters": labels,
        "n_clusters": len(clusters),
        "n_noise_points": int(np.count_nonzero(labels == -1)),
        "eps": eps,
        "min_samples": min_samples,
        "core_samples": db.core_sample_indices_,
        "silhouette_score": _silhouette_non_noise(X, labels),
    }


def _silhouette_non_noise(X, labels):
    mask = labels != -1
    if not mask.any():
        return None
    Xc, lc = X[mask], labels[mask]
    return _silhouette(Xc, lc, len(np.unique(lc)), 42)


def lag_columns(y):
    """The earlier engine's 2-D view of a 1-D series for PCA: columns [x, x shifted by one] with the
    shift circular (x[-1] first), each standardised to zero mean and unit (population) variance; a
    constant column stays zero."""
    X = np.column_stack([y, np.roll(y, 1)])
    X = X - X.mean(axis=0)
    sd = X.std(axis=0)
    return X / np.where(sd > 0, sd, 1.0)


@params(min_points=2, n_components=Int(min=1, help="components to keep"))
@algorithm("pca", "Principal component analysis (scikit-learn PCA, full SVD); 1-D data uses the standardised "
                  "columns [x, x shifted by one] as the earlier engine", input="matrix",
           optional={"n_components": "2", **NAN})
def pca(inp):
    if inp.matrix:
        X = inp.points(2)
    else:
        X = lag_columns(inp.series(min_points=2))
    n, d = X.shape
    limit = min(n, d)
    if inp.p.has("n_components"):
        nc = inp.p.int("n_components", min=1)
        if nc > limit:
            raise InvalidArgument("n_components=%d exceeds min(n_samples, n_features) = %d" % (nc, limit))
    else:
        nc = min(2, limit)
    from sklearn.decomposition import PCA
    model = PCA(n_components=nc, svd_solver="full")
    T = model.fit_transform(X)
    return {
        "transformed_data": T,
        "explained_variance_ratio": model.explained_variance_ratio_,
        "explained_variance": model.explained_variance_,
        "components": model.components_,
        "n_components": nc,
        "total_variance_explained": float(np.sum(model.explained_variance_ratio_)),
        "singular_values": model.singular_values_,
        "mean": model.mean_,
        "input": "matrix" if inp.matrix else "x,x_shifted_standardised",
    }


def _regression_metrics(y, pred):
    resid = y - pred
    mse = float(np.mean(resid ** 2))
    ss_tot = float(np.sum((y - np.mean(y)) ** 2))
    # sklearn's r2_score convention: constant y -> 1.0 for a perfect fit, else 0.0
    if ss_tot == 0.0:
        r2 = 1.0 if mse == 0.0 else 0.0
    else:
        r2 = 1.0 - float(np.sum(resid ** 2)) / ss_tot
    return mse, r2


@params(min_points=2, target=Int(min=0, help="column index of the target in a matrix (instead of the target vector)"),
        fit_intercept=Bool(help="fit an intercept"))
@algorithm("linear_regression", "Ordinary least squares (scikit-learn LinearRegression); 1-D data is "
                                "fitted against its index", input="matrix",
           optional={"target": "", "fit_intercept": "true", **NAN})
def linear_regression(inp):
    fit_intercept = inp.p.bool("fit_intercept")
    X, y, source = inp.features_target(min_points=2)
    from sklearn.linear_model import LinearRegression
    model = LinearRegression(fit_intercept=fit_intercept).fit(X, y)
    pred = model.predict(X)
    mse, r2 = _regression_metrics(y, pred)
    return {
        "coefficients": model.coef_,
        "intercept": float(model.intercept_),
        "predictions": pred,
        "mse": mse,
        "r2_score": r2,
        "rmse": float(np.sqrt(mse)),
        "fit_intercept": fit_intercept,
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "x_source": source,
    }


MAX_CLASSES = 20


def _is_classification(y, task):
    if task == "regression":
        return False
    integral = bool(np.all(np.equal(np.mod(y, 1), 0)))
    n_classes = len(np.unique(y))
    if task == "classification":
        if not integral:
            raise InvalidArgument("task=classification needs integer class labels as target")
        if n_classes < 2:
            raise InvalidArgument("task=classification needs at least 2 classes, got %d" % n_classes)
        return True
    # auto: integral target with few classes (2..20, and at most half the number of samples)
    return integral and 2 <= n_classes <= min(MAX_CLASSES, len(y) // 2)


PROGRESS_STEPS = 20


def _fit_forest_in_steps(model, X, y, n_estimators, inp):
    """Fits the forest in up to PROGRESS_STEPS increments (warm_start), reporting trees fitted so far.

    The trees are the same as in one fit: with warm_start, scikit-learn skips the random draws of the trees
    already fitted, so tree i gets the same seed either way; the out-of-bag score is computed once, over
    all trees, by the last increment. A test compares both paths' results (they are bit-identical)."""
    step = -(-n_estimators // PROGRESS_STEPS)
    model.set_params(warm_start=True, oob_score=False)
    done = 0
    while done < n_estimators:
        done = min(n_estimators, done + step)
        model.set_params(n_estimators=done, oob_score=done == n_estimators)
        model.fit(X, y)
        inp.report_progress(done / n_estimators, "%d of %d trees" % (done, n_estimators))
    model.set_params(warm_start=False)


@params(min_points=2, target=Int(min=0, help="column index of the target in a matrix"),
        n_estimators=Int(min=1, max=10000, help="trees"),
        max_depth=Int(min=1, max=10000, words=("none", "null", "0"), help="maximum depth (none = unlimited)"),
        task=Choice("auto", "regression", "classification",
                    help="auto: classifier for an integral target with few classes, else regressor"))
@algorithm("random_forest", "Random forest (scikit-learn); regressor, or classifier for an integral target "
                            "with few classes (task=auto); in-sample predictions and out-of-bag score",
           input="matrix",
           optional={"target": "", "n_estimators": "100", "max_depth": "none", "random_state": "42",
                     "task": "auto", **NAN})
def random_forest(inp):
    n_estimators = inp.p.int("n_estimators", min=1, max=10000)
    md = inp.p.get_str("max_depth").strip().lower()
    max_depth = None if md in ("none", "null", "0") else inp.p.int("max_depth", min=1, max=10000)
    rs = _random_state(inp)
    task = inp.p.choice("task", ("auto", "regression", "classification"))
    X, y, source = inp.features_target(min_points=2)
    if task == "auto" and source == "index":
        classify = False  # the old engine (a series against its index) always ran a regressor
    else:
        classify = _is_classification(y, task)
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    cls = RandomForestClassifier if classify else RandomForestRegressor
    with warnings.catch_warnings():
        # tiny inputs: some samples are never out of bag; sklearn warns and the OOB score is unreliable
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        model = cls(n_estimators=n_estimators, max_depth=max_depth, random_state=rs, oob_score=True,
                    bootstrap=True, n_jobs=1)
        if inp.wants_progress and n_estimators > 1:
            _fit_forest_in_steps(model, X, y, n_estimators, inp)
        else:
            model.fit(X, y)
        oob = float(model.oob_score_) if hasattr(model, "oob_score_") else None
    pred = model.predict(X)
    out = {
        "predictions": pred,
        "feature_importances": model.feature_importances_,
        "n_estimators": n_estimators,
        "max_depth": max_depth,
        "oob_score": oob,
        "task": "classification" if classify else "regression",
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "x_source": source,
    }
    if classify:
        out["classes"] = model.classes_
        out["accuracy"] = float(np.mean(pred == y))
    else:
        mse, r2 = _regression_metrics(y, pred)
        out.update({"mse": mse, "r2_score": r2, "rmse": float(np.sqrt(mse))})
    return out

"""The catalogue (catalogue.py) says what each algorithm's code does: types, bounds, words, minimum points.

The engine validates requests from this declaration (its generated copy is checked by the engine's
CatalogueDriftTest), so a declaration that is looser or stricter than the code would be drift too.
"""

import numpy as np
import pytest

from analytics_worker import catalogue
from analytics_worker.core import REGISTRY, AlgorithmError
from inproc import run

ENTRIES = {e["name"]: e for e in catalogue.catalogue()}
DATA_ALGOS = sorted(n for n, e in ENTRIES.items() if e["category"] in ("ml", "timeseries"))

# a valid request per algorithm, big enough for every param probe below
SERIES = list(10 + 0.2 * np.arange(48) + 3 * np.sin(np.arange(48) * 2 * np.pi / 12))
# (min_points is the fewest over all params: arima needs max(5, p+d+q+3), so probe it with a small order)
BASE = {n: {"params": {"kmeans": {"k": "2"}, "arima": {"order": "1,0,0"}}.get(n, {})} for n in DATA_ALGOS}


def test_every_param_of_every_algorithm_has_a_declared_type():
    for algo in REGISTRY.values():
        e = catalogue.entry(algo)  # raises on a param without a type, or a type for no param
        for p in e["params"]:
            assert p["type"] in catalogue.TYPES


def test_statistics_twins_are_not_in_the_catalogue():
    assert "mean" not in ENTRIES and "kmeans" in ENTRIES


def _outcome(name, n, params):
    try:
        run(name, SERIES[:n], params=dict(BASE[name]["params"], **params))
        return None
    except AlgorithmError as e:
        return e.message


@pytest.mark.parametrize("name", DATA_ALGOS)
def test_declared_min_points_is_what_the_code_needs(name):
    need = ENTRIES[name]["min_points"]
    assert need >= 1
    below = _outcome(name, need - 1, {})
    assert below is not None and "at least %d" % need in below, below
    at = _outcome(name, max(need, 2) if name == "kmeans" else need, {})
    assert at is None or "at least" not in at, at


def _declared_default_ok(p):
    d = p["default"].strip().lower()
    if d == "" or d in p["words"]:
        return True
    if p["type"] == "choice":
        return d in p["choices"]
    if p["type"] in ("int", "number"):
        x = float(d)
        lo_ok = p["min"] is None or x > p["min"] or (x == p["min"] and not p["min_exclusive"])
        return lo_ok and (p["max"] is None or x <= p["max"])
    if p["type"] == "bool":
        return d in ("true", "false", "1", "0", "yes", "no", "on", "off")
    return True


def test_every_default_satisfies_its_own_declaration():
    for e in ENTRIES.values():
        for p in e["params"]:
            assert _declared_default_ok(p), (e["name"], p)


def _probes(p):
    """(value, accepted?) pairs at the declared edges of one param."""
    out = [(w, True) for w in p["words"]]
    if p["type"] == "choice":
        out += [(p["choices"][0], True), ("no-such-choice", False)]
    if p["type"] == "int":
        out.append(("abc", False))
        if p["min"] is not None:
            out.append((str(int(p["min"]) - 1), str(int(p["min"]) - 1) in p["words"]))
    if p["type"] == "number":
        out += [("abc", False), ("nan", False)]
        if p["min"] is not None:
            out.append((repr(float(p["min"]) - 1.0), False))
            if p["min_exclusive"]:
                out.append((repr(float(p["min"])), False))
        if p["max"] is not None:
            out.append((repr(float(p["max"]) + 1.0), False))
    return out


@pytest.mark.parametrize("name", DATA_ALGOS)
def test_code_rejects_what_the_declaration_rejects_and_takes_its_words(name):
    e = ENTRIES[name]
    for p in e["params"]:
        if p["name"] in ("target", "nan_policy"):
            continue  # need a matrix / NaN data to matter; covered by test_algorithms
        extra = {}
        if name == "anomaly_detection" and p["name"] in ("contamination", "n_estimators", "random_state"):
            extra = {"method": "isolation_forest"}  # those params only apply there
        for value, accepted in _probes(p):
            msg = _outcome(name, len(SERIES), dict(extra, **{p["name"]: value}))
            if accepted:
                assert msg is None or "'%s'" % p["name"] not in msg, (name, p["name"], value, msg)
            else:
                assert msg is not None and "'%s'" % p["name"] in msg, (name, p["name"], value, msg)


def test_an_undeclared_param_fails_the_catalogue_but_not_the_hello():
    from analytics_worker.core import Algorithm
    algo = Algorithm("_probe", lambda inp: None, "probe", [], {"mystery": "1"}, "series", True)
    with pytest.raises(RuntimeError, match="'mystery' has no declared type"):
        catalogue.entry(algo)
    spec = algo.spec()  # what the hello sends
    assert [p["type"] for p in spec["params"]] == ["string"]

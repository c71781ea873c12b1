"""Run registered algorithms in-process (same path as the server after decoding)."""

import json

import numpy as np

from analytics_worker.core import REGISTRY, AlgorithmError
from analytics_worker.jsonout import to_json
from analytics_worker.server import load_algorithms

load_algorithms()


def run(name, data=(), shape=None, params=None, target=None, texts=None):
    """Result as the client would see it (JSON round trip)."""
    from analytics_worker.core import Input
    algo = REGISTRY[name]
    raw = np.asarray(data, dtype="<f8").tobytes()
    arr = np.frombuffer(raw, dtype="<f8")
    shape = list(shape) if shape is not None else [arr.size]
    tgt = None if target is None else np.frombuffer(np.asarray(target, dtype="<f8").tobytes(), dtype="<f8")
    inp = Input(name, arr, shape, tgt, list(texts or []), dict(params or {}), algo.optional)
    return json.loads(to_json(algo.func(inp)))


def error(name, *args, **kwargs):
    """(code, message) of a failing call; fails the test if the call succeeds."""
    try:
        r = run(name, *args, **kwargs)
    except AlgorithmError as e:
        return e.code, e.message
    raise AssertionError("%s unexpectedly succeeded: %r" % (name, r))

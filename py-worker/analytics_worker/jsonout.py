"""result_json encoding: plain JSON, NaN/Inf -> null, numpy types converted, allow_nan=False."""

import json
import math

import numpy as np


def _clean(obj):
    t = type(obj)
    if obj is None or t is bool or t is int or t is str:
        return obj
    if isinstance(obj, float):  # includes np.float64 (a float subclass)
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f":
            if obj.size and not np.isfinite(obj).all():
                return _clean(obj.tolist())
            return obj.tolist()
        if obj.dtype.kind in "iub":
            return obj.tolist()
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    raise TypeError("result contains a %s, which is not JSON-compatible" % type(obj).__name__)


def to_json(result):
    """Encode an algorithm result as JSON text (compact, keys in insertion order)."""
    return json.dumps(_clean(result), allow_nan=False, separators=(",", ":"))

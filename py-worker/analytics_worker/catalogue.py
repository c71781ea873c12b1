"""The catalogue of the Python algorithms: the one declaration the engine validates requests from.

Each algorithm declares its parameters once, here in the worker package: the defaults in
``@algorithm(optional=...)`` (core.py) and the type of every parameter, the allowed values, the minimum
number of data points in ``@params(...)`` stacked above it. ``catalogue()`` joins them into plain data:

    {"name", "category", "description", "input": series|matrix|text, "min_points", "test_only",
     "params": [{"name", "type": int|number|bool|string|int_list|choice, "required", "default",
                 "min", "max", "min_exclusive", "choices", "words", "help"}]}

``words`` are literal values accepted besides the type (``threshold=auto``, ``max_depth=none``).

The engine ships the output as engine/src/main/resources/analytics/engine/catalogue/python-algorithms.json
(regenerate: ``scripts/gen-catalogue.sh``); CatalogueDriftTest fails when the file and this package
differ, and every worker's hello carries the same entries, which the engine checks against its file.
The native statistics are declared by the engine (their Python twins exist for parity), so they are not
part of this catalogue.

Run ``python -m analytics_worker.catalogue`` to print it (JSON, sorted, stable).
"""

import json
import sys

from .core import REGISTRY

TYPES = ("int", "number", "bool", "string", "int_list", "choice")

# modules → category shown by GetSupportedAlgorithms
CATEGORIES = {"ml": "ml", "timeseries": "timeseries", "text": "text", "testing": "test", "stats": "statistics"}


class Param:
    """Type of one parameter, with the bounds and the literal words it also accepts."""

    __slots__ = ("type", "min", "max", "min_exclusive", "choices", "words", "help")

    def __init__(self, type, min=None, max=None, min_exclusive=False, choices=(), words=(), help=""):
        assert type in TYPES, type
        assert (type == "choice") == bool(choices), (type, choices)
        self.type = type
        self.min = min
        self.max = max
        self.min_exclusive = min_exclusive
        self.choices = [c.lower() for c in choices]
        self.words = [w.lower() for w in words]
        self.help = help


def Int(min=None, max=None, words=(), help=""):
    return Param("int", min=min, max=max, words=words, help=help)


def Number(min=None, max=None, min_exclusive=False, words=(), help=""):
    return Param("number", min=min, max=max, min_exclusive=min_exclusive, words=words, help=help)


def Bool(help=""):
    return Param("bool", help=help)


def Text(help=""):
    return Param("string", help=help)


def IntList(help=""):
    return Param("int_list", help=help)


def Choice(*choices, help=""):
    return Param("choice", choices=choices, help=help)


# parameters many algorithms share, declared once
COMMON = {
    "nan_policy": Choice("raise", "omit", help="raise: NaN/Inf in data is an error; omit: drop those rows"),
    "random_state": Int(min=0, max=2 ** 32 - 1, help="seed"),
}


def params(min_points=0, **types):
    """Declares the types of an algorithm's parameters and its fewest data points.

    Stack it above ``@algorithm``; every name in ``required``/``optional`` needs a type here or in COMMON.
    """

    def deco(func):
        func.catalogue_types = types
        func.catalogue_min_points = min_points
        return func

    return deco


def entry(algo, strict=True):
    """The catalogue entry of one registered algorithm (also sent in the worker's hello).

    ``strict`` (the catalogue, the tests) refuses a param without a declared type; the hello is not strict
    (a worker must still start): such a param goes out as a string, and the engine reports the difference.
    """
    types = getattr(algo.func, "catalogue_types", {})
    out = []
    names = [(n, True, "") for n in algo.required] + [(n, False, d) for n, d in algo.optional.items()]
    for name, required, default in names:
        p = types.get(name) or COMMON.get(name)
        if p is None and not strict:
            p = Text()
        if p is None:
            raise RuntimeError("algorithm %r: param %r has no declared type (add it to @params)"
                               % (algo.name, name))
        out.append({
            "name": name, "type": p.type, "required": required, "default": default,
            "min": p.min, "max": p.max, "min_exclusive": p.min_exclusive,
            "choices": list(p.choices), "words": list(p.words), "help": p.help,
        })
    unknown = sorted(set(types) - {n for n, _, _ in names})
    if unknown and strict:
        raise RuntimeError("algorithm %r: @params declares %s, which it neither requires nor defaults"
                           % (algo.name, ", ".join(unknown)))
    module = algo.func.__module__.rsplit(".", 1)[-1]
    return {
        "name": algo.name,
        "category": CATEGORIES.get(module, module),
        "description": algo.description,
        "input": algo.input,
        "min_points": getattr(algo.func, "catalogue_min_points", 0),
        "test_only": algo.test_only,
        "params": out,
    }


def catalogue():
    """Every Python algorithm except the native statistics' twins, sorted by name (test-only included)."""
    from .algorithms import ml, stats, testing, text, timeseries  # noqa: F401  (registers them)
    entries = [entry(a) for _, a in sorted(REGISTRY.items())]
    return [e for e in entries if e["category"] != "statistics"]


def main(argv=None):
    json.dump({"algorithms": catalogue()}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Test-only algorithms (registered only with --enable-test-algorithms; see PROTOCOL.md)."""

import os
import signal
import time

import numpy as np

from ..catalogue import Bool, Int, Number, params
from ..core import algorithm

# Set by the server so _test_garbage can write to the connection.
CONNECTION = {"sock": None}


@params(seconds=Number(min=0.0, max=86400.0, help="how long"))
@algorithm("_test_sleep", input="matrix", description="TEST: sleep params.seconds, then answer", optional={"seconds": "1"}, test_only=True)
def test_sleep(inp):
    seconds = inp.p.float("seconds", min=0.0, max=86400.0)
    time.sleep(seconds)
    return {"slept": seconds}


@params(uncancellable=Bool(help="ignore SIGIO first: a cancel cannot stop it"))
@algorithm("_test_hang", input="matrix", description="TEST: never returns (pure-Python busy loop)",
           optional={"uncancellable": "false"}, test_only=True)
def test_hang(inp):
    if inp.p.bool("uncancellable"):
        # like one long call into C code: no cancel frame can stop it (the engine must kill the worker). Ignored,
        # not just blocked: another thread of the process (a forked worker's engine watcher) would take it.
        signal.signal(signal.SIGIO, signal.SIG_IGN)
    x = 0
    while True:
        x = (x + 1) & 0xFFFF


@params(code=Int(min=0, max=255, help="exit status"))
@algorithm("_test_crash", input="matrix", description="TEST: os._exit(code) mid-request", optional={"code": "3"}, test_only=True)
def test_crash(inp):
    code = inp.p.int("code", min=0, max=255)
    os._exit(code)


@algorithm("_test_alloc", input="matrix", description="TEST: allocates memory without bound", test_only=True)
def test_alloc(inp):
    hold = []
    while True:
        block = bytearray(64 * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])  # touch every page so it counts in RSS
        hold.append(block)


@algorithm("_test_garbage", input="matrix", description="TEST: writes a malformed frame to the socket", test_only=True)
def test_garbage(inp):
    sock = CONNECTION["sock"]
    # a length header promising 16 bytes followed by bytes that are not msgpack
    sock.sendall(b"\x00\x00\x00\x10" + b"\xc1" * 16)
    return {"garbage_sent": True}


@algorithm("_test_echo", "TEST: returns n, sum(data) and shape (transport tests)", input="matrix", test_only=True)
def test_echo(inp):
    return {"n": int(inp.data.size), "sum": float(np.sum(inp.data)), "shape": list(inp.shape)}


@algorithm("_test_random", "TEST: first draws of this worker's random and numpy global generators", test_only=True)
def test_random(inp):
    import random
    return {"pid": os.getpid(), "random": [random.random() for _ in range(3)],
            "numpy": [float(x) for x in np.random.random(3)]}

"""A minimal engine for tests: listens on a temp Unix socket, spawns a real worker process.

Framing is implemented here independently of analytics_worker.protocol (struct + msgpack), so the
tests check the wire format rather than the worker's own codec.
"""

import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

import msgpack
import numpy as np

PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "test-token-0123456789abcdef"


def pack(msg):
    body = msgpack.packb(msg, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def f64(values):
    return np.asarray(values, dtype="<f8").tobytes()


class EngineSide:
    def __init__(self, worker_id=1, extra_args=(), test_algorithms=True, env=None, timeout=60.0,
                 preexec_fn=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="aw-test-")
        self.path = os.path.join(self.tmp.name, "workers.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.listener.settimeout(timeout)
        cmd = [sys.executable, "-m", "analytics_worker", "--socket", self.path, "--worker-id", str(worker_id)]
        if test_algorithms:
            cmd.append("--enable-test-algorithms")
        cmd.extend(extra_args)
        e = dict(os.environ)
        e["PYTHONPATH"] = PKG_DIR + os.pathsep + e.get("PYTHONPATH", "")
        e["ANALYTICS_WORKER_TOKEN"] = TOKEN
        if env:
            e.update(env)
        self.t_spawn = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=preexec_fn)
        self.conn = None
        self.hello = None
        self.timeout = timeout

    # ---- connection
    def accept(self):
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(self.timeout)
        self.hello = self.recv()
        self.t_hello = time.perf_counter()
        return self.hello

    def send_raw(self, data):
        self.conn.sendall(data)

    def send(self, msg):
        self.conn.sendall(pack(msg))

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            if not chunk:
                raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return buf

    def recv_raw(self):
        (length,) = struct.unpack(">I", self._recv_exact(4))
        return self._recv_exact(length)

    def recv(self):
        return msgpack.unpackb(self.recv_raw(), raw=False)

    def at_eof(self):
        """True when the worker closed its end (after any pending bytes)."""
        try:
            return self.conn.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    # ---- messages
    def request(self, algorithm, data=(), shape=None, params=None, target=None, texts=None,
                req_id="req-0001", timeout_ms=30000, **extra):
        msg = {"type": "request", "id": req_id, "algorithm": algorithm, "params": params or {},
               "data": f64(data) if not isinstance(data, (bytes, bytearray)) else bytes(data),
               "timeout_ms": timeout_ms}
        if shape is not None:
            msg["shape"] = list(shape)
        if target is not None:
            msg["target"] = f64(target)
        if texts is not None:
            msg["texts"] = list(texts)
        msg.update(extra)
        self.send(msg)
        return self.recv()

    def ping(self, ping_id="p1"):
        self.send({"type": "ping", "id": ping_id})
        return self.recv()

    def wait_exit(self, timeout=20.0):
        return self.proc.wait(timeout=timeout)

    def stderr_text(self):
        return self.proc.stderr.read().decode("utf-8", "replace") if self.proc.poll() is not None else ""

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for s in (self.conn, self.listener):
            if s is not None:
                s.close()
        if self.proc.stdout:
            self.proc.stdout.close()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.tmp.cleanup()

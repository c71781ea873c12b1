#!/usr/bin/env python3
"""Load client for tests/scaleout.sh: Analyze calls through nginx from several threads over one gRPC
channel, killing one engine (SIGKILL, by PID) after a given number of answers, and reporting what the
clients saw. Needs only grpcio: messages are encoded by hand (the v7 field numbers), so no generated code.

Output: one JSON object on stdout.
"""
import argparse
import json
import os
import random
import signal
import struct
import sys
import threading
import time

import grpc

ANALYZE = "/analytics.AnalyticsEngine/Analyze"


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, wire, payload):
    return _varint((num << 3) | wire) + payload


def encode_request(request_id, algorithm, data):
    packed = struct.pack("<%dd" % len(data), *data)
    rid = request_id.encode()
    alg = algorithm.encode()
    return (_field(1, 2, _varint(len(rid)) + rid) + _field(2, 2, _varint(len(alg)) + alg)
            + _field(3, 2, _varint(len(packed)) + packed))


def _read_varint(buf, i):
    shift = 0
    n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def decode_response(buf):
    """AnalysisResponse -> dict with request_id, success, error_message, result_json, error_code."""
    out = {"request_id": "", "success": False, "error_message": "", "result_json": "", "error_code": 0}
    names = {1: "request_id", 3: "error_message", 4: "result_json"}
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(buf, i)
            if num == 2:
                out["success"] = bool(v)
            elif num == 10:
                out["error_code"] = v
        elif wire == 2:
            ln, i = _read_varint(buf, i)
            if num in names:
                out[names[num]] = bytes(buf[i:i + ln]).decode()
            i += ln
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError("bad wire type %d" % wire)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", required=True, help="nginx host:port")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--points", type=int, default=20000, help="values per request (summary)")
    ap.add_argument("--kill-pid", type=int, default=0)
    ap.add_argument("--kill-signal", default="KILL", choices=["KILL", "TERM"])
    ap.add_argument("--kill-after", type=int, default=1000, help="answers before the kill")
    ap.add_argument("--deadline", type=float, default=10.0, help="per-call deadline, seconds")
    args = ap.parse_args()

    rng = random.Random(7)
    data = [round(rng.gauss(10.0, 2.0), 6) for _ in range(args.points)]
    expected_count = str(args.points)

    channel = grpc.insecure_channel(args.target, options=[
        ("grpc.max_receive_message_length", 16 << 20), ("grpc.max_send_message_length", 16 << 20),
        ("grpc.enable_retries", 0)])  # raw figures: no client-side retries
    call = channel.unary_unary(ANALYZE, request_serializer=lambda b: b, response_deserializer=decode_response)
    grpc.channel_ready_future(channel).result(timeout=20)

    lock = threading.Lock()
    state = {"next": 0, "answered": 0, "ok": 0, "wrong": 0, "errors": {}, "error_samples": [],
             "killed_at": None, "kill_time": None, "in_flight_at_kill": 0, "after_kill_ok": 0,
             "after_kill_failed": 0, "in_flight": 0, "last_error_after_kill_s": None, "failures": []}

    def kill_now():
        state["killed_at"] = state["answered"]
        state["in_flight_at_kill"] = state["in_flight"]
        state["kill_time"] = time.monotonic()
        os.kill(args.kill_pid, signal.SIGKILL if args.kill_signal == "KILL" else signal.SIGTERM)

    def worker():
        while True:
            with lock:
                if state["next"] >= args.requests:
                    return
                i = state["next"]
                state["next"] += 1
                state["in_flight"] += 1
            req = encode_request("r%d" % i, "summary", data)
            started = time.monotonic()
            err = None
            resp = None
            try:
                resp = call(req, timeout=args.deadline)
            except grpc.RpcError as e:
                err = "%s: %s" % (e.code().name, (e.details() or "")[:160])
            with lock:
                state["in_flight"] -= 1
                state["answered"] += 1
                after = state["kill_time"] is not None
                if err is None and resp["success"] and ('"count":' + expected_count) in resp["result_json"]:
                    state["ok"] += 1
                    if after:
                        state["after_kill_ok"] += 1
                else:
                    if err is None:
                        err = "success=false: " + resp["error_message"][:160] if not resp["success"] else "wrong result"
                        if resp["success"]:
                            state["wrong"] += 1
                    code = err.split(":")[0]
                    state["errors"][code] = state["errors"].get(code, 0) + 1
                    if len(state["error_samples"]) < 5:
                        state["error_samples"].append(err)
                    now = time.monotonic()
                    state["failures"].append({
                        "started_after_kill_s": None if state["kill_time"] is None
                        else round(started - state["kill_time"], 4),
                        "duration_s": round(now - started, 4), "error": err[:80]})
                    if after:
                        state["after_kill_failed"] += 1
                        state["last_error_after_kill_s"] = round(now - state["kill_time"], 3)
                if args.kill_pid and state["kill_time"] is None and state["answered"] >= args.kill_after:
                    kill_now()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    channel.close()
    failed = args.requests - state["ok"]
    print(json.dumps({
        "requests": args.requests, "ok": state["ok"], "failed": failed, "wrong_results": state["wrong"],
        "errors_by_code": state["errors"], "error_samples": state["error_samples"],
        "killed_after_answers": state["killed_at"], "in_flight_at_kill": state["in_flight_at_kill"],
        "after_kill_ok": state["after_kill_ok"], "after_kill_failed": state["after_kill_failed"],
        "last_failure_after_kill_s": state["last_error_after_kill_s"],
        "failures": state["failures"][:50],
        "latest_failed_call_start_after_kill_s": max(
            [f["started_after_kill_s"] for f in state["failures"] if f["started_after_kill_s"] is not None],
            default=None),
        "elapsed_s": round(elapsed, 2), "rps": round(args.requests / elapsed, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

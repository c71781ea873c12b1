"""Baseline: a plain Python grpcio server for analytics.AnalyticsEngine, computing in-process.

This is the honest alternative to the engine: the idiomatic server a team would write — grpc.server with a
ThreadPoolExecutor, numpy/scipy/scikit-learn called directly in the handler, json.dumps of the result.

    python bench/baseline/server.py --port 50099 --workers 10

Stubs come from bench/baseline/gen_stubs.sh (generated into bench/baseline/_gen, git-ignored).
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_gen"))
sys.path.insert(0, HERE)

import grpc  # noqa: E402

import algorithms  # noqa: E402
import analytics_pb2 as pb  # noqa: E402
import analytics_pb2_grpc as pb_grpc  # noqa: E402

VERSION = "baseline-0.1"
MAX_MESSAGE = 64 * 1024 * 1024


def _finite_json(obj):
    # json.dumps would write NaN/Infinity (invalid JSON): the contract wants null
    return json.dumps(obj, allow_nan=True).replace("NaN", "null").replace("-Infinity", "null").replace(
        "Infinity", "null")


class AnalyticsServicer(pb_grpc.AnalyticsEngineServicer):
    def analyze_one(self, req):
        t0 = time.perf_counter()
        impl = "none"
        resp = pb.AnalysisResponse(request_id=req.request_id)
        try:
            impl, result = algorithms.run(req.algorithm, req.data, list(req.shape), list(req.target),
                                          dict(req.params))
            resp.success = True
            resp.result_json = _finite_json(result)
        except algorithms.UnknownAlgorithm:
            resp.success = False
            resp.error_code = pb.UNKNOWN_ALGORITHM
            resp.error_message = "unknown algorithm '%s'" % req.algorithm
        except (algorithms.BadInput, ValueError) as e:
            resp.success = False
            resp.error_code = pb.INVALID_ARGUMENT
            resp.error_message = str(e)
        except Exception as e:  # an algorithm bug: report, keep serving
            resp.success = False
            resp.error_code = pb.INTERNAL
            resp.error_message = "%s: %s" % (type(e).__name__, e)
        if not req.HasField("options") or req.options.include_metadata:
            us = int((time.perf_counter() - t0) * 1e6)
            resp.metadata.implementation = impl
            resp.metadata.execution_time_ms = us // 1000
            resp.metadata.algorithm = req.algorithm
            resp.metadata.data_size = len(req.data)
            resp.metadata.stats["execution_time_us"] = str(us)
        return resp

    def Analyze(self, request, context):
        return self.analyze_one(request)

    def BatchAnalyze(self, request, context):
        for r in request.requests:
            yield self.analyze_one(r)

    def HealthCheck(self, request, context):
        return pb.HealthCheckResponse(healthy=True, version=VERSION,
                                      capabilities={"implementations": "native,python"})

    def GetSupportedAlgorithms(self, request, context):
        out = pb.SupportedAlgorithmsResponse()
        for name in algorithms.STATS:
            out.algorithms.add(name=name, implementations=["native"])
        for name in algorithms.ML:
            out.algorithms.add(name=name, implementations=["python"])
        return out

    def AnalyzeStream(self, request_iterator, context):
        first = None
        data = []
        for chunk in request_iterator:
            if first is None:
                first = chunk
            data.extend(chunk.data)
        if first is None:
            return pb.AnalysisResponse(success=False, error_code=pb.INVALID_ARGUMENT, error_message="empty stream")
        req = pb.AnalysisRequest(request_id=first.request_id, algorithm=first.algorithm, data=data,
                                 params=first.params, options=first.options)
        return self.analyze_one(req)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Baseline Python grpcio analytics server (numpy/sklearn in-process)")
    ap.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--workers", type=int, default=10, help="thread pool size (default 10)")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be >= 1")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers),
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                  ("grpc.max_send_message_length", MAX_MESSAGE)])
    pb_grpc.add_AnalyticsEngineServicer_to_server(AnalyticsServicer(), server)
    bound = server.add_insecure_port("%s:%d" % (args.host, args.port))
    if bound == 0:
        print("baseline: cannot listen on %s:%d" % (args.host, args.port), file=sys.stderr)
        return 3
    server.start()
    print("baseline listening on %s:%d (%d threads)" % (args.host, bound, args.workers), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    stop.wait()
    server.stop(2).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The kernel's share of receiving one 10^6-point request: CPU time of a thread that only receives 8 MB over
loopback TCP into a preallocated buffer (no HTTP/2, no gRPC, no decoding), against a sender on another thread.
Any server pays at least this per 8 MB request on this machine; bench/README.md ("Eleventh pass") sets it
against what 3x the baseline's sequential `mean` over 10^6 points leaves a server.

    python3 bench/tcp_floor.py [ROUNDS]      (default 200; the first 20 are not counted)
"""
import os
import socket
import sys
import threading
import time

SIZE = 8 * 1000 * 1000 + 64  # a 10^6-point AnalysisRequest: 8 MB of doubles and a few header bytes
WARM = 20


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    payload = os.urandom(SIZE)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))  # a free port, loopback only
    srv.listen(1)
    port = srv.getsockname()[1]

    def sender():
        with socket.create_connection(("127.0.0.1", port)) as c:
            for _ in range(rounds):
                c.sendall(payload)
                c.recv(1)  # the receiver's go-ahead: one request in flight at a time, as sequential calls

    t = threading.Thread(target=sender)
    t.start()
    conn, _ = srv.accept()
    buf = memoryview(bytearray(SIZE))
    cpu = []
    for i in range(rounds):
        got = 0
        c0 = time.thread_time()
        while got < SIZE:
            n = conn.recv_into(buf[got:], SIZE - got)
            if n == 0:
                sys.exit("sender closed early")
            got += n
        if i >= WARM:
            cpu.append((time.thread_time() - c0) * 1000.0)
        conn.send(b"x")
    t.join()
    conn.close()
    srv.close()
    cpu.sort()
    print("receiving 8 MB over loopback TCP: receiver thread CPU p50 %.2f ms, min %.2f ms, max %.2f ms (%d rounds)"
          % (cpu[len(cpu) // 2], cpu[0], cpu[-1], len(cpu)))


if __name__ == "__main__":
    main()

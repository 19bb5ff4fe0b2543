#!/usr/bin/env python3
"""The publish path alone: one stream, one publisher publishing one event after another (each waits for the last's
answer), against sse-hub and nginx + nchan (one worker each), interleaved. For each way of publishing it prints the
median time from connecting (or, on a kept connection, sending) to the event arriving on the stream, and the server's
CPU per publish (every thread of the server's processes, from /proc/PID/task/*/schedstat, which counts nanoseconds,
not ticks):

- on a new connection each time (as sse-bench publishes), or on one connection kept open (HTTP/1.1 keep-alive, as a
  backend's HTTP client does by default);
- 10 ms apart (every publish finds the server idle: its threads asleep, their caches cold), or back to back.

    python3 scripts/publish-latency.py [--runs 3] [--publishes 1000] [--baseline DIR]
"""
import argparse
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("bench", os.path.join(HERE, "bench.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

MODES = [("new connection", False, 0.01), ("kept connection", True, 0.01),
         ("new connection, back to back", False, 0), ("kept connection, back to back", True, 0)]


def token(*arguments):
    return subprocess.run([os.path.join(bench.BIN, "sse-supervisor"), "token", *arguments], check=True, capture_output=True,
                          text=True, env=dict(os.environ, SSE_JWT_SECRET=bench.SECRET)).stdout.strip()


class Requests:
    """The stream's and the publishes' requests of one server."""

    def __init__(self, kind, port):
        self.port = port
        if kind == "nchan":
            self.stream = b"GET /sub/probe HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
            self.path, self.headers = "/pub/probe", ""
            self.body = lambda n: json.dumps({"n": n})
        else:
            user, publisher = token("probe"), token("backend", "--publisher")
            self.stream = f"GET /api/sse/stream?token={user} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            self.path = "/api/sse/publish"
            self.headers = f"Content-Type: application/json\r\nAuthorization: Bearer {publisher}\r\n"
            self.body = lambda n: json.dumps({"event": "probe", "userId": "probe", "data": {"n": n}})

    def publish(self, n):
        body = self.body(n)
        return (f"POST {self.path} HTTP/1.1\r\nHost: x\r\n{self.headers}Content-Length: {len(body)}\r\n\r\n{body}").encode()

    def connect(self):
        connection = socket.create_connection(("127.0.0.1", self.port))
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection


def read_answer(connection):
    """One response (head and Content-Length body); whether the server keeps the connection."""
    data = b""
    while True:
        head, separator, rest = data.partition(b"\r\n\r\n")
        if separator:
            lines = [line.lower() for line in head.split(b"\r\n")]
            length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:")), 0)
            if len(rest) >= length:
                return b"connection: close" not in lines
        chunk = connection.recv(65536)
        if not chunk:
            return False
        data += chunk


def cpu_nanoseconds(pids):
    total = 0
    for pid in pids:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass  # a thread that ended meanwhile
    return total


def measure(requests, pids, publishes, kept, gap):
    """Median latency (ms) and server CPU per publish (µs) of `publishes` publishes in a row."""
    stream = requests.connect()
    stream.sendall(requests.stream)
    stream.settimeout(10)
    stream.recv(65536)  # the response head (and sse-hub's `connected`)
    publisher = None
    latencies = []
    before = cpu_nanoseconds(pids)
    for n in range(publishes):
        marker = json.dumps({"n": n}).encode()
        compact = marker.replace(b" ", b"")
        started = time.perf_counter()  # a new connection's set-up is part of its publish
        publisher = publisher or requests.connect()
        publisher.sendall(requests.publish(n))
        seen = b""
        while marker not in seen and compact not in seen:
            seen += stream.recv(65536)
        latencies.append((time.perf_counter() - started) * 1000)
        if not (read_answer(publisher) and kept):
            publisher.close()
            publisher = None
        if gap:
            time.sleep(gap)
    cpu = (cpu_nanoseconds(pids) - before) / 1000 / publishes
    for connection in (stream, publisher):
        if connection:
            connection.close()
    return statistics.median(latencies), cpu


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--publishes", type=int, default=1000)
    parser.add_argument("--baseline", help="also measure the sse-supervisor and sse-worker of this folder")
    options = parser.parse_args()
    servers = {"sse-hub": lambda: bench.Hub(1), "nchan": lambda: bench.Nchan(1)}
    if options.baseline:
        servers[bench.BASELINE] = lambda: bench.Hub(1, name=bench.BASELINE, bin_dir=os.path.abspath(options.baseline))
    results = {(name, mode): [] for name in servers for mode, _, _ in MODES}
    for run in range(options.runs):
        for name, make in servers.items():
            server = make()
            pid = server.start()
            try:
                time.sleep(0.5)
                requests = Requests("nchan" if name == "nchan" else "sse-hub", 18081 if name == "nchan" else bench.HUB_PORT)
                pids = bench.process_tree(pid)
                for mode, kept, gap in MODES:
                    latency, cpu = measure(requests, pids, options.publishes, kept, gap)
                    results[(name, mode)].append((latency, cpu))
                    print(f"{name}, {mode}, run {run + 1}: p50 {latency:.3f} ms, server CPU {cpu:.1f} µs per publish", flush=True)
            finally:
                server.stop()
    print(f"\n| publishing | {' | '.join(servers)} |\n| --- |{' --- |' * len(servers)}")
    for mode, _, _ in MODES:
        cells = []
        for name in servers:
            rows = results[(name, mode)]
            cells.append(f"{statistics.median(r[0] for r in rows):.3f} ms, {statistics.median(r[1] for r in rows):.0f} µs")
        print(f"| {mode} | {' | '.join(cells)} |")
    print(f"\n(median latency from connect, or send on a kept connection, to the event on the stream, and server CPU per "
          f"publish; medians of {options.runs} runs "
          f"of {options.publishes} publishes)")


if __name__ == "__main__":
    main()

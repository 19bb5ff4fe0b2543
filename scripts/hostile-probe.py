#!/usr/bin/env python3
"""Measures what hostile load makes sse-hub hold (issue 9): memory under large events, and health latency
with many topics. Starts its own supervisor on a loopback port and prints one JSON object.

  python3 scripts/hostile-probe.py [--build .build/release] [--events 10000] [--event-bytes 60000]
                                   [--users 400] [--topics-per-user 250]
"""
import argparse, http.client, json, os, re, signal, socket, statistics, subprocess, sys, tempfile, threading, time

SECRET = "hostile-probe-secret-0123456789abcdef"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid):
    """Every child of `pid`, whichever of its threads spawned it."""
    found = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            pass
    return sorted(found)


class Watcher:
    """A stream read on a thread of its own, so `wait_for` can tell when every event published before a marker is out."""

    def __init__(self, port, token):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(f"GET /api/sse/stream?token={token} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.seen = threading.Event()
        self.marker = b"event: marker"
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        tail = b""
        while True:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return
            tail = (tail + chunk)[-4096:]
            if self.marker in tail:
                self.seen.set()

    def wait_for_marker(self, timeout=300):
        if not self.seen.wait(timeout):
            raise RuntimeError("the marker event did not arrive")


def request(port, method, path, body=None, token=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=".build/debug")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--event-bytes", type=int, default=60000)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--topics-per-user", type=int, default=250)
    args = parser.parse_args()

    env = dict(os.environ, SSE_JWT_SECRET=SECRET)
    supervisor = os.path.join(args.build, "sse-supervisor")
    extra = ["--user", "nobody"] if os.geteuid() == 0 else []
    log_file = tempfile.NamedTemporaryFile(prefix="hostile-probe-", suffix=".log", delete=False)
    server = subprocess.Popen(
        [supervisor, "--listen", "127.0.0.1:0", "--workers", str(args.workers)] + extra, env=env, stderr=log_file)
    port = None
    deadline = time.time() + 20
    while port is None and time.time() < deadline:
        with open(log_file.name) as log:
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read())
        if match:
            port = int(match.group(1))
        else:
            time.sleep(0.05)
    if port is None:
        sys.exit("the supervisor did not start; see " + log_file.name)

    def token(user, publisher=False):
        command = [supervisor, "token", user] + (["--publisher"] if publisher else [])
        return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.strip()

    try:
        while True:
            status, body = request(port, "GET", "/api/health")
            if status == 200:
                break
            time.sleep(0.05)
        publisher = token("probe-publisher", publisher=True)
        result = {"workers": args.workers}

        # Large events: what the histories hold.
        watcher = Watcher(port, token("probe-watcher"))
        payload = "x" * args.event_bytes
        started = time.time()
        for n in range(args.events):
            status, _ = request(port, "POST", "/api/sse/publish", json.dumps({"event": "big", "data": {"n": n, "p": payload}}), publisher)
            assert status == 200, status
        request(port, "POST", "/api/sse/publish", json.dumps({"event": "marker"}), publisher)
        watcher.wait_for_marker()  # every event delivered, so later streams see no backlog
        time.sleep(3)  # two trim periods
        result["large_events"] = {
            "events": args.events, "event_bytes": args.event_bytes, "seconds": round(time.time() - started, 1),
            "supervisor_rss_mib": round(rss_kib(server.pid) / 1024, 1),
            "worker_rss_mib": [round(rss_kib(pid) / 1024, 1) for pid in children(server.pid)],
        }

        # Many topics, many users (each within --max-topics-per-user), all with a stream open: health latency.
        streams = []
        for u in range(args.users):
            user = f"probe-user-{u}"
            user_token = token(user)
            topics = [f"topic-{u}-{t}" for t in range(args.topics_per_user)]
            for start in range(0, len(topics), 100):
                status, _ = request(port, "POST", "/api/sse/subscribe", json.dumps({"topics": topics[start:start + 100]}), user_token)
                assert status == 200, status
            stream = socket.create_connection(("127.0.0.1", port))
            stream.sendall(f"GET /api/sse/stream?token={user_token} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            streams.append(stream)
        expected = args.users * args.topics_per_user
        deadline = time.time() + 60
        while time.time() < deadline:
            _, body = request(port, "GET", "/api/health")
            if json.loads(body)["services"]["sse"]["totalTopics"] == expected:
                break
            time.sleep(0.2)
        latencies = []
        for _ in range(50):
            started = time.perf_counter()
            request(port, "GET", "/api/health")
            latencies.append((time.perf_counter() - started) * 1000)
        _, body = request(port, "GET", "/api/health")
        result["many_topics"] = {
            "users": args.users, "topics": expected, "health": json.loads(body)["services"]["sse"],
            "health_ms_median": round(statistics.median(latencies), 2), "health_ms_max": round(max(latencies), 2),
            "worker_rss_mib": [round(rss_kib(pid) / 1024, 1) for pid in children(server.pid)],
        }
        for stream in streams:
            stream.close()
        print(json.dumps(result, indent=2))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()

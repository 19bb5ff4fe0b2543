#!/usr/bin/env python3
"""How many publishes a second go through the shared event log: three sse-hub hosts (release build, one worker
each) share a private PostgreSQL server; an app publishes from SQL (`sse_hub.publish`, a batch of events per
transaction, as an app inside its own transactions would), and one stream on each host counts what arrives.

Publishing from SQL measures the log itself (commit, doorbell, every host's follower, delivery): HTTP publishing
through sse-bench's one-connection-per-publish saturates these two cores first (see BENCHMARKS.md).

    python3 scripts/log-throughput.py                 # offered rates 5k, 10k, 20k, 40k events/s for 10 s each
    python3 scripts/log-throughput.py --rates 10000 --seconds 20
"""
import argparse, http.client, importlib.util, json, os, subprocess, sys, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("cluster_bench", os.path.join(HERE, "cluster-bench.py"))
cb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cb)


class StreamCounter(threading.Thread):
    """One stream on one host: records when each numbered event arrived (monotonic ns)."""

    def __init__(self, port, user):
        super().__init__(daemon=True)
        self.port, self.user, self.arrivals, self.ready = port, user, {}, threading.Event()

    def run(self):
        token = subprocess.run([f"{cb.BIN}/sse-supervisor", "token", self.user], env=dict(os.environ, SSE_JWT_SECRET=cb.SECRET),
                               capture_output=True, text=True, check=True).stdout.strip()
        connection = http.client.HTTPConnection("127.0.0.1", self.port)
        connection.request("GET", f"/api/sse/stream?token={token}")
        response = connection.getresponse()
        self.ready.set()
        while True:
            line = response.fp.readline()
            if not line:
                return
            if line.startswith(b"data: {\"seq\":"):  # jsonb's text: {"seq": 12}
                self.arrivals[int(line[13:line.index(b"}")].split(b",")[0])] = time.monotonic_ns()


def publish(url, first, count, per_row):
    if per_row:  # what an app does: sse_hub.publish once per event, in its transaction
        sql = (f"SELECT count(sse_hub.publish('bench', json_build_object('seq', g)::jsonb)) "
               f"FROM generate_series({first}, {first + count - 1}) g")
    else:  # what the hosts' group commit does with HTTP publishes: one statement per batch
        sql = (f"SELECT sse_hub.append_batch(array_fill('bench'::text, ARRAY[{count}]), "
               f"ARRAY(SELECT json_build_object('seq', g)::jsonb::text FROM generate_series({first}, {first + count - 1}) g), "
               f"array_fill(''::text, ARRAY[{count}]), array_fill(''::text, ARRAY[{count}]))")
    subprocess.run(["psql", url, "-qAtc", sql], check=True, capture_output=True)


def measure(url, ports, rate, seconds, batch, per_row):
    counters = [StreamCounter(port, f"counter-{index}") for index, port in enumerate(ports)]
    for counter in counters:
        counter.start()
        counter.ready.wait(10)
    time.sleep(0.5)
    total = int(rate * seconds)
    committed = {}  # first seq of a batch -> monotonic ns when its transaction returned
    start = time.monotonic_ns()
    interval = batch / rate
    behind = 0
    next_seq = 0
    while next_seq < total:
        due = start + int((next_seq // batch) * interval * 1e9)
        now = time.monotonic_ns()
        if due > now:
            time.sleep((due - now) / 1e9)
        elif now - due > 1e9:
            behind += 1
        count = min(batch, total - next_seq)
        publish(url, next_seq, count, per_row)
        committed[next_seq + count - 1] = time.monotonic_ns()
        next_seq += count
    publish_end = time.monotonic_ns()
    deadline = time.time() + 60
    while time.time() < deadline and not all(len(c.arrivals) >= total for c in counters):
        time.sleep(0.05)
    results = []
    for counter in counters:
        arrivals = counter.arrivals
        got = len(arrivals)
        last = max(arrivals.values()) if arrivals else start
        # Commit of a batch's transaction to its last event's arrival on this host.
        lags = sorted((arrivals[s] - t) / 1e6 for s, t in committed.items() if s in arrivals)
        results.append({"received": got, "seconds": (last - start) / 1e9, "perSecond": got / max((last - start) / 1e9, 1e-9),
                        "lagP50ms": lags[len(lags) // 2] if lags else None, "lagP99ms": lags[int(len(lags) * 0.99)] if lags else None})
    return {"offered": rate, "published": total, "publishSeconds": (publish_end - start) / 1e9, "hosts": results}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", type=int, nargs="+", default=[10000, 20000, 40000, 80000])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--batch", type=int, default=2000, help="events per transaction")
    parser.add_argument("--per-row", action="store_true", help="sse_hub.publish once per event (else append_batch per batch)")
    options = parser.parse_args()
    postgres = cb.Postgres()
    postgres.start()
    hub = cb.HubCluster(postgres, 1)
    rows = []
    try:
        for rate in options.rates:
            hub.start()
            try:
                result = measure(postgres.url, cb.HUB_PORTS, rate, options.seconds, options.batch, options.per_row)
            finally:
                hub.stop()
            rows.append(result)
            cb.log(json.dumps(result))
    finally:
        postgres.stop()
    print("| offered events/s | published in | delivered per host (events/s) | commit → last event p50 / p99 | received |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        hosts = row["hosts"]
        rates = " / ".join(format(h["perSecond"], ",.0f") for h in hosts)
        lags = " / ".join("%.0f–%.0f ms" % (h["lagP50ms"], h["lagP99ms"]) for h in hosts if h["lagP50ms"] is not None)
        received = " / ".join(str(h["received"]) for h in hosts)
        print("| %s | %.1f s | %s | %s | %s of %s |" % (format(row["offered"], ","), row["publishSeconds"], rates, lags, received,
                                                     format(row["published"], ",")))

if __name__ == "__main__":
    main()

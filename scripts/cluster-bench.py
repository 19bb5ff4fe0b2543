#!/usr/bin/env python3
"""Several hosts, one hub: three sse-hub hosts sharing a PostgreSQL event log against three nginx + nchan servers
sharing one redis-server, measured in the same run with sse-bench (streams spread over the three hosts, publishes
through each in turn), in alternating order, several rounds; prints medians and ratios (and --json the raw reports).

The sse-hub side: the release build (.build-release), one worker per host (three nginx with one worker each on the
other side), a private PostgreSQL server started here (its own data directory and port, as the postgres user,
fsync and synchronous commits on: what a publish confirmation costs in production). The nchan side: the peers'
nchan-cluster (../shared/peers/nchan-cluster/start.sh: redis without persistence).

    python3 scripts/cluster-bench.py                         # the fan-out comparison and the log's own throughput
    python3 scripts/cluster-bench.py --rounds 5 --json out.json
"""
import argparse, glob, importlib.util, json, os, shutil, signal, statistics, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".build-release", "release")
PEERS = os.path.join(os.path.dirname(ROOT), "shared", "peers")
SECRET = "cluster-bench-secret-0123456789abcdef"
HUB_PORTS = [18101, 18102, 18103]
NCHAN_PORTS = [18091, 18092, 18093]
PG_PORT = 55450


# The single-host benchmark's helpers (importing it runs nothing).
_spec = importlib.util.spec_from_file_location("bench", os.path.join(ROOT, "scripts", "bench.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
log, wait_http = bench.log, bench.wait_http


class Postgres:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sse-hub-bench-pg-")
        self.bin = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
        self.proc = None

    def as_postgres(self, args):
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + args if os.geteuid() == 0 else args

    def start(self):
        shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(self.as_postgres([f"{self.bin}/initdb", "-D", f"{self.dir}/data", "--auth=trust", "-U", "postgres",
                                         "-E", "UTF8", "--locale=C"]), check=True, stdout=subprocess.DEVNULL)
        self.proc = subprocess.Popen(self.as_postgres([f"{self.bin}/postgres", "-D", f"{self.dir}/data", "-p", str(PG_PORT),
                                                       "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}"]),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run(["psql", self.url, "-Atc", "select 1"], capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres did not start")

    @property
    def url(self):
        return f"postgres://postgres@127.0.0.1:{PG_PORT}/postgres?sslmode=disable"

    def reset(self):
        subprocess.run(["psql", self.url, "-qAtc", "DROP SCHEMA IF EXISTS sse_hub CASCADE"], check=True, capture_output=True)

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


class HubCluster:
    name = "sse-hub"

    def __init__(self, postgres, workers):
        self.postgres, self.workers, self.procs = postgres, workers, []

    def start(self):
        self.postgres.reset()
        env = dict(os.environ, SSE_JWT_SECRET=SECRET)
        for index, port in enumerate(HUB_PORTS):
            args = [f"{BIN}/sse-supervisor", "--listen", f"127.0.0.1:{port}", "--workers", str(self.workers),
                    "--postgres-url", self.postgres.url, "--host-id", f"bench-{index}", "--log-level", "warning"]
            if os.geteuid() == 0:
                args += ["--user", "nobody"]
            self.procs.append(subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_http(f"http://127.0.0.1:{port}/api/health", 30)

    def bench_args(self):
        return ["--target", "sse-hub", "--ports", *map(str, HUB_PORTS), "--server-pid", str(self.procs[0].pid),
                "--also-server-pid", str(self.procs[1].pid), "--also-server-pid", str(self.procs[2].pid),
                "--also-server-pid", str(self.postgres.proc.pid)]

    def stop(self):
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(30)
        self.procs = []


class NchanCluster:
    name = "nchan"

    def start(self):
        subprocess.run([f"{PEERS}/nchan-cluster/start.sh"], check=True, stdout=subprocess.DEVNULL)
        run = os.environ.get("PEERS_RUN", f"{PEERS}/run")
        self.pids = [int(open(f"{run}/nchan-cluster-{i}.pid").read()) for i in (1, 2, 3)] + [int(open(f"{run}/nchan-redis.pid").read())]
        subprocess.run(["redis-cli", "-p", "18086", "flushall"], check=True, stdout=subprocess.DEVNULL)

    def bench_args(self):
        args = ["--target", "nchan", "--ports", *map(str, NCHAN_PORTS), "--server-pid", str(self.pids[0])]
        for pid in self.pids[1:]:
            args += ["--also-server-pid", str(pid)]
        return args

    def stop(self):
        subprocess.run([f"{PEERS}/nchan-cluster/stop.sh"], stdout=subprocess.DEVNULL)


def run_once(server, scenario):
    server.start()
    try:
        command = [f"{BIN}/sse-bench", "run", *server.bench_args(), *scenario["args"], "--json"]
        result = subprocess.run(command, env=dict(os.environ, SSE_JWT_SECRET=SECRET), capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"sse-bench failed: {result.stderr[-2000:]}")
        return json.loads(result.stdout)
    finally:
        server.stop()


FIGURES = [
    ("delivered events/s", lambda r: r["deliveredPerSecond"], "{:,.0f}"),
    ("latency p50 ms", lambda r: r["latencyMilliseconds"]["p50"], "{:.2f}"),
    ("latency p99 ms", lambda r: r["latencyMilliseconds"]["p99"], "{:.2f}"),
    ("latency max ms", lambda r: r["latencyMilliseconds"]["max"], "{:.1f}"),
    ("server CPU µs/event", lambda r: r.get("serverCPUMicrosecondsPerEvent"), "{:.3f}"),
    ("publishes refused", lambda r: r["publishesFailed"], "{}"),
    ("lost / duplicated", lambda r: f'{r["lost"]} / {r["duplicated"]}', "{}"),
    # With publishes through three hosts at once there is no publisher's order to compare with: what must hold is
    # that every stream saw the same order (1).
    ("distinct delivery orders", lambda r: r["deliveryOrders"], "{}"),
    ("sse-bench CPU µs/event", lambda r: r["loadToolCPUMicrosecondsPerEvent"], "{:.3f}"),
]


def median_of(reports, get):
    values = [get(r) for r in reports]
    if any(v is None for v in values):
        return None
    if isinstance(values[0], str):
        return values[0] if len(set(values)) == 1 else " | ".join(values)
    return statistics.median(values)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="workers per sse-hub host (nginx: one worker each)")
    parser.add_argument("--json", help="write the raw reports here")
    parser.add_argument("--only", choices=["fanout", "fanout-300", "throughput"], help="one scenario")
    options = parser.parse_args()
    postgres = Postgres()
    postgres.start()
    hub, nchan = HubCluster(postgres, options.workers), NchanCluster()
    scenarios = [
        {"name": "fanout", "title": "3,000 streams over 3 hosts, broadcast, 100 publishes/s for 20 s through every host",
         "args": ["--streams", "3000", "--ramp", "3000", "--events", "2000", "--rate", "100", "--drain", "30"], "servers": [hub, nchan]},
        {"name": "fanout-300", "title": "3,000 streams over 3 hosts, broadcast, 300 publishes/s for 10 s through every host",
         "args": ["--streams", "3000", "--ramp", "3000", "--events", "3000", "--rate", "300", "--drain", "60"], "servers": [hub, nchan]},
        {"name": "throughput", "title": "30 streams over 3 hosts, broadcast, 5,000 publishes/s offered for 5 s through every host (HTTP)",
         "args": ["--streams", "30", "--events", "25000", "--rate", "5000", "--drain", "30"], "servers": [hub, nchan]},
    ]
    raw = {}
    try:
        for scenario in scenarios:
            if options.only and scenario["name"] != options.only:
                continue
            for round_index in range(options.rounds):
                order = scenario["servers"] if round_index % 2 == 0 else list(reversed(scenario["servers"]))
                for server in order:
                    log(f"{scenario['name']} round {round_index + 1}: {server.name}")
                    report = run_once(server, scenario)
                    raw.setdefault(scenario["name"], {}).setdefault(server.name, []).append(report)
                    log(f"  delivered {report['deliveredPerSecond']:,.0f}/s, p99 {report['latencyMilliseconds']['p99']:.2f} ms, "
                        f"lost {report['lost']}, refused {report['publishesFailed']}")
    finally:
        postgres.stop()
    if options.json:
        with open(options.json, "w") as out:
            json.dump(raw, out, indent=2)
    for scenario in scenarios:
        if scenario["name"] not in raw:
            continue
        runs = raw[scenario["name"]]
        print(f"\n### {scenario['title']}\n")
        print(f"`sse-bench run --ports <3 hosts> {' '.join(scenario['args'])}`, medians of {options.rounds} alternating rounds\n")
        print("| figure | sse-hub ×3 + PostgreSQL | nchan ×3 + Redis | ratio |")
        print("| --- | --- | --- | --- |")
        for label, get, fmt in FIGURES:
            ours, theirs = median_of(runs.get("sse-hub", []), get), median_of(runs.get("nchan", []), get)
            cell = lambda v: "n/a" if v is None else fmt.format(v)
            ratio = f"{ours / theirs:.2f}×" if isinstance(ours, (int, float)) and isinstance(theirs, (int, float)) and theirs else ""
            print(f"| {label} | {cell(ours)} | {cell(theirs)} | {ratio} |")


if __name__ == "__main__":
    main()

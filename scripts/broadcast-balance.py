#!/usr/bin/env python3
"""Why broadcast-5k-10/s's median latency is not a server's alone: runs the scenario, interleaved, against nginx +
nchan as bench.py starts it (2 workers, one listening socket), nginx + nchan with SO_REUSEPORT (the kernel spreads the
connections evenly over its workers), and sse-hub with 2 workers and with 1. It prints each run's latency p50 / p99
and server CPU per event, and for nginx how many descriptors each worker holds mid-run (how its streams are spread).

With the load tool on the same two cores, a server whose streams sit mostly in one process leaves the other core to
the load tool during a broadcast: a lower median, a later p99. The "pinned" variants take that out of the comparison:
the server's processes on CPU 0, the load tool on CPU 1 (`taskset`), so no server can use the reader's core, as no
server can use its remote clients' cores.

The "2 readers" variants read the streams with two load processes instead of one: one alone takes about as long to
read a broadcast as a server takes to write it, so the median measures the reader.

    python3 scripts/broadcast-balance.py [RUNS [VARIANT ...]]     (default 4 runs of every variant; the release
                                                                   build in .build-release)
"""
import importlib.util
import os
import statistics
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("bench", os.path.join(HERE, "bench.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
SCENARIO = next(s for s in bench.SCENARIOS if s.name == "broadcast-5k-10/s")


class NchanReusePort(bench.Nchan):
    def env(self):
        return dict(super().env(), NCHAN_REUSEPORT="1")


# Two load processes, one a core: one alone reads a broadcast about as slowly as a server writes it.
TWO_READERS = SCENARIO._replace(common=tuple(SCENARIO.common) + ("--processes", "2"))

# name: (server, pinned, scenario)
VARIANTS = {
    "nchan": (lambda: bench.Nchan(2), False, SCENARIO),
    "nchan (SO_REUSEPORT)": (lambda: NchanReusePort(2), False, SCENARIO),
    "sse-hub, 2 workers": (lambda: bench.Hub(2), False, SCENARIO),
    "sse-hub, 1 worker": (lambda: bench.Hub(1), False, SCENARIO),
    "nchan, pinned": (lambda: bench.Nchan(2), True, SCENARIO),
    "sse-hub, 2 workers, pinned": (lambda: bench.Hub(2), True, SCENARIO),
    "nchan, 2 readers": (lambda: bench.Nchan(2), False, TWO_READERS),
    "sse-hub, 2 workers, 2 readers": (lambda: bench.Hub(2), False, TWO_READERS),
}
SERVER_CPU, LOAD_TOOL_CPU = "0", "1"


def descriptors_per_child(pid):
    """The descriptors each child of `pid` holds: its share of the streams."""
    counts = []
    for child in bench.children(pid):
        try:
            counts.append(len(os.listdir(f"/proc/{child}/fd")))
        except OSError:
            pass
    return sorted(counts, reverse=True)


def run(server, sample, pinned, scenario=SCENARIO):
    """The report of one run, and (with `sample`) the descriptors each worker process held mid-run."""
    spread = []
    sampler = None

    def started(pid):
        nonlocal sampler
        if pinned:
            for process in bench.process_tree(pid):
                subprocess.run(["taskset", "-a", "-p", "-c", SERVER_CPU, str(process)], check=True, capture_output=True)
        if sample:
            # The streams are open a few seconds in (5,000 at 5,000 a second), while the events go out for ten.
            sampler = threading.Timer(6, lambda: spread.extend(descriptors_per_child(pid)))
            sampler.start()

    try:
        report = bench.run_once(server, scenario, prefix=["taskset", "-c", LOAD_TOOL_CPU] if pinned else [], started=started)
    finally:
        if sampler:
            sampler.cancel()  # a run that failed before the sample
            sampler.join()
    return report, spread


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    chosen = {name: variant for name, variant in VARIANTS.items() if len(sys.argv) <= 2 or name in sys.argv[2:]}
    results = {name: [] for name in chosen}
    for index in range(runs):
        for name, (make, pinned, scenario) in chosen.items():
            report, spread = run(make(), sample=name.startswith("nchan"), pinned=pinned, scenario=scenario)
            latency = report["latencyMilliseconds"]
            results[name].append((latency["p50"], latency["p99"], report["serverCPUMicrosecondsPerEvent"]))
            extra = f", descriptors per nginx worker {spread}" if spread else ""
            print(f"{name} run {index + 1}: p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms, "
                  f"server CPU per event {report['serverCPUMicrosecondsPerEvent']:.2f} µs{extra}", flush=True)
    print()
    for name, rows in results.items():
        print(f"{name}: p50 {statistics.median(r[0] for r in rows):.1f} ms, p99 {statistics.median(r[1] for r in rows):.1f} ms, "
              f"server CPU per event {statistics.median(r[2] for r in rows):.2f} µs (median of {len(rows)})")


if __name__ == "__main__":
    main()

"""Soak run: the simulated closed loop (policy node + Stretch bridge, separate processes, real rclpy) driven for
a long time with goals, e-stops mid-episode and camera outages mid-episode, as an operator would over a shift.

Every episode is one goal: a plain one runs to its end; every `--estop-every`-th is e-stopped after two actions
and released; every `--pause-every`-th loses its cameras for 2 s after two actions (`publish_camera` switched off
and on through the bridge's parameter service) and must resume and finish. A goal is lost when its episode
never starts or never ends (the loop goes on). Memory is each node's resident set (/proc/PID/status VmRSS),
sampled every 10 s; growth compares the median of the last tenth of the run with the median of the first tenth
after a one-minute warm-up. Decision latency is the policy's end-of-motion -> command time, as medians per
tenth of the run. Prints key=value figures; writes soak.json and soak.png into --out.

    .venv/bin/python benchmarks/soak.py --minutes 60 [--out runs/soak]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters

from flare_bringup.graph import Graph
from flare_bringup.runner import EpisodeRunner, GraphError

FAMILIES = ("objectnav", "pickup", "fetch", "roomvisit")
WARMUP_S = 60.0
SAMPLE_S = 10.0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Soak:
    def __init__(self, runner: EpisodeRunner, graph: Graph) -> None:
        self.runner, self.graph = runner, graph
        self.started = time.monotonic()
        self.memory: list[tuple[float, dict[str, int]]] = []
        self.latency: list[tuple[float, float]] = []  # (elapsed s, decision ms)
        self.counts = {"episodes": 0, "finished": 0, "successes": 0, "estopped": 0, "paused": 0, "goals_lost": 0}
        self.lost: list[str] = []
        self.camera_client = runner.node.create_client(SetParameters, "/stretch_bridge/set_parameters")
        self.sample_memory()
        runner.node.create_timer(SAMPLE_S, self.sample_memory)  # fires while the runner spins, whatever it waits for

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def sample_memory(self) -> None:
        self.memory.append((self.elapsed(), {n: rss_kib(p.pid) for n, p in self.graph.processes.items()}))

    def cameras(self, on: bool) -> None:
        value = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=on)
        future = self.camera_client.call_async(SetParameters.Request(parameters=[Parameter(name="publish_camera",
                                                                                           value=value)]))  # fmt: skip
        self.runner.spin_until(future.done, 10, "the bridge's parameter service")

    def episode(self, index: int, estop: bool, pause: bool) -> None:
        r = self.runner
        task = r.start_task(FAMILIES[index % len(FAMILIES)], index % 500)
        episode = r.send_goal(task["goal"])
        mine = lambda: [s for s in r.statuses if s.episode == episode]  # noqa: E731
        over = lambda: mine()[-1].state == "finished"  # noqa: E731
        if estop or pause:
            r.spin_until(lambda: any(s.step >= 2 for s in mine()) or over(), 30, "two actions")
        if estop and not over():
            r.estop(True)
            r.spin_until(lambda: mine()[-1].state == "estopped", 10, "the e-stop")
            r.estop(False)
            r.spin_until(lambda: r.latest_status().state == "idle", 10, "the release")
            self.counts["estopped"] += 1
        else:
            if pause and not over():
                self.cameras(False)
                r.spin_until(lambda: mine()[-1].state == "paused" or over(), 10, "the policy to pause")
                r.spin_for(2.0)  # the outage
                self.cameras(True)
                self.counts["paused"] += 1
            r.spin_until(over, 180, f"episode {episode} to finish")
        final = mine()[-1]
        if final.state == "finished":
            self.counts["finished"] += 1
            self.counts["successes"] += bool(final.extra.get("success"))
        self.latency += [(self.elapsed(), s.extra["decision_ms"]) for s in mine() if s.state == "acting"]
        self.counts["episodes"] += 1


def run(minutes: float, out: Path, estop_every: int, pause_every: int) -> dict:
    graph = Graph("stretch", log_dir=out / "logs").start()
    runner = EpisodeRunner("flare_soak")
    soak = Soak(runner, graph)
    try:
        runner.wait_ready()
        index = 0
        while soak.elapsed() < minutes * 60 and not graph.dead():  # Ctrl-C: stop here and report so far
            index += 1
            try:
                soak.episode(index, estop=index % estop_every == 0, pause=index % pause_every == 0)
            except GraphError as err:
                soak.counts["goals_lost"] += 1
                soak.lost.append(f"episode {index}: {err}")
                runner.estop(False)
                soak.cameras(True)
            except KeyboardInterrupt:
                break
            if index % 50 == 0:
                print(f"{soak.elapsed() / 60:.1f} min: {soak.counts}", flush=True)
        dead = graph.dead()
    finally:
        runner.close()
        graph.stop()
    return summarise(soak, minutes, dead)


def tenths(series: list[tuple[float, float]], total_s: float) -> list[float | None]:
    buckets: list[list[float]] = [[] for _ in range(10)]
    for t, v in series:
        buckets[min(9, int(10 * t / total_s))].append(v)
    return [round(statistics.median(b), 2) if b else None for b in buckets]


def summarise(soak: Soak, minutes: float, dead: dict) -> dict:
    total = soak.elapsed()
    growth = {}
    settled = [(t, m) for t, m in soak.memory if t >= min(WARMUP_S, total / 4)]
    window = max(1, len(settled) // 10)
    for name in soak.graph.processes:
        first = statistics.median(m[name] for _, m in settled[:window])
        last = statistics.median(m[name] for _, m in settled[-window:])
        growth[name] = {"first_mib": round(first / 1024, 1), "last_mib": round(last / 1024, 1),
                        "growth_pct": round(100 * (last - first) / first, 2)}  # fmt: skip
    return {
        "minutes": round(total / 60, 1),
        **soak.counts,
        "dead_nodes": dead,
        "lost": soak.lost,
        "memory": growth,
        "decision_ms_median_per_tenth": tenths(soak.latency, total),
        "decision_ms_median": round(statistics.median(v for _, v in soak.latency), 2) if soak.latency else None,
        "memory_samples": soak.memory,
        "latency": soak.latency,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, lat) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for name in result["memory"]:
        mem.plot([t / 60 for t, _ in result["memory_samples"]],
                 [m[name] / 1024 for _, m in result["memory_samples"]], label=name)  # fmt: skip
    mem.set_ylabel("resident memory (MiB)")
    mem.legend()
    times = [t / 60 for t, _ in result["latency"]]
    lat.plot(times, [v for _, v in result["latency"]], ",", alpha=0.4)
    lat.set_ylabel("decision latency (ms)")
    lat.set_xlabel("minutes")
    lat.set_yscale("log")
    fig.suptitle(f"soak: {result['episodes']} episodes, {result['goals_lost']} goals lost")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("runs/soak"))
    parser.add_argument("--estop-every", type=int, default=7, help="e-stop every Nth episode")
    parser.add_argument("--pause-every", type=int, default=5, help="camera outage in every Nth episode")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(args.minutes, args.out, args.estop_every, args.pause_every)
    (args.out / "soak.json").write_text(json.dumps(result, indent=1))
    plot(result, args.out / "soak.png")
    for key in ("minutes", "episodes", "finished", "successes", "estopped", "paused", "goals_lost"):
        print(f"{key}={result[key]}")
    for name, m in result["memory"].items():
        print(f"memory_growth_pct_{name}={m['growth_pct']} ({m['first_mib']} -> {m['last_mib']} MiB)")
    print(f"decision_ms_median={result['decision_ms_median']}")
    print(f"decision_ms_median_per_tenth={result['decision_ms_median_per_tenth']}")
    print(f"dead_nodes={result['dead_nodes'] or 'none'}")


if __name__ == "__main__":
    main()

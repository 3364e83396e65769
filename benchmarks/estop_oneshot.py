"""One-shot e-stops through the running graph: how many `ros2 topic pub --once -w 2` publishes (mirrored by
`flare_bringup.runner.one_shot_estop`, each in a DDS participant of its own) reach both the policy node and the
simulated Stretch bridge (separate processes, real rclpy + Fast DDS), per keep-alive (`--keep-alive`, how long
the publisher lives after publishing; ros2cli's default is 0.1 s). Each trial engages and releases; a lost
message is counted, then repeated with a long keep-alive so the next trial starts from a known state. Run it on
a busy machine too (during training): discovery is slowest there. Prints key=value lines.

    .venv/bin/python benchmarks/estop_oneshot.py [--trials 50] [--keep-alive 0.1 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from flare_bringup.graph import Graph
from flare_bringup.runner import EpisodeRunner, GraphError, one_shot_estop

WAIT_S = 3.0  # a delivered e-stop shows on both nodes' status within milliseconds; 3 s is generous


def state_reached(runner: EpisodeRunner, engaged: bool, events_before: int) -> bool:
    """Both nodes show the new state: the policy's status, and a new e-stop event from the bridge."""
    status = runner.latest_status()
    events = runner.bridge_estops()
    policy = status is not None and status.state == ("estopped" if engaged else "idle")
    bridge = len(events) > events_before and events[-1]["event"] == ("estop" if engaged else "estop_released")
    return policy and bridge


def send(runner: EpisodeRunner, engaged: bool, keep_alive_s: float) -> bool:
    """One one-shot publish; True when both nodes got it within WAIT_S."""
    before = len(runner.bridge_estops())
    one_shot_estop(engaged, keep_alive_s=keep_alive_s)
    try:
        runner.spin_until(lambda: state_reached(runner, engaged, before), WAIT_S, "the one-shot e-stop")
        return True
    except GraphError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=50, help="engage + release pairs per keep-alive")
    parser.add_argument("--keep-alive", type=float, nargs="+", default=[0.1, 1.0], help="seconds")
    args = parser.parse_args()
    runner = EpisodeRunner()
    with tempfile.TemporaryDirectory() as logs, Graph("stretch", log_dir=Path(logs)) as graph:
        try:
            runner.wait_ready()
            runner.node.destroy_publisher(runner.estop_pub)  # only one-shot publishers from here on
            for keep_alive in args.keep_alive:
                delivered, seconds = 0, []
                for _ in range(args.trials):
                    for engaged in (True, False):
                        start = time.monotonic()
                        ok = send(runner, engaged, keep_alive)
                        seconds.append(time.monotonic() - start)
                        delivered += ok
                        while not ok:  # back to a known state before the next trial
                            ok = send(runner, engaged, 2.0)
                print(f"keep_alive={keep_alive:g} delivered={delivered}/{2 * args.trials} "
                      f"lost={2 * args.trials - delivered} median_s={sorted(seconds)[len(seconds) // 2]:.2f}",
                      flush=True)  # fmt: skip
            assert not graph.dead(), graph.dead()
        finally:
            runner.close()


if __name__ == "__main__":
    main()

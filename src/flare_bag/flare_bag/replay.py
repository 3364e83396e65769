"""Open-loop replay: run a policy through the same ONNX Runtime as the robot on the frames of a recorded run.

    python -m flare_bag.replay BAG MODEL_DIR [--out DIR] [--camera nav=/camera/color/image_raw] [--robot locobot]
                               [--allow-upscale]

For each episode (one per goal message) the policy starts with an empty cache and, at every recorded decision,
sees the frames that decision used; its greedy action is compared with the recorded one, then the recorded
action is fed back as "previous action" (the history that really happened). Reports action agreement, a
confusion matrix, the first divergence per episode, latencies and the recorded outcome: `replay.json`,
`report.md` and plots in --out.

What it can tell: whether a model decides as the recorded one did on the same inputs (regression checks after
re-export or quantisation, 100 % expected for the same model), where two models part ways, and how fast the
model runs here. What it cannot: whether a different model would have *succeeded*. After the first divergence
the recorded frames show where the recorded policy went, not where this one would have gone, so later
agreement is conditional on the recorded history, and success needs a closed-loop run (simulator or robot).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flare_bag.bagio import BagError, Episode, FlareBag
from flare_core import protocol
from flare_core.actions import ACTION_NAMES, UnknownActionError, action_by_name
from flare_core.images import decode_rgb
from flare_core.preprocessing import FrameError
from flare_core.runtime import OnnxPolicy, PolicyLoadError


@dataclass
class EpisodeReplay:
    episode: int
    goal: str
    decisions: int
    recorded: list[str] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list)
    agreement: float = 0.0
    first_divergence: dict | None = None
    recorded_outcome: dict = field(default_factory=dict)
    recorded_inference_ms: float | None = None
    recorded_decision_ms: float | None = None
    replay_inference_ms: float | None = None
    error: str = ""


def _median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def _check_frame(frame: np.ndarray, camera: str, card_cameras: dict, first_shape: dict, upscale: bool) -> None:
    want = card_cameras[camera]
    if not upscale and (frame.shape[0] < want.height or frame.shape[1] < want.width):
        raise FrameError(
            f"camera {camera!r} frame is {frame.shape[1]}x{frame.shape[0]}, smaller than the model's "
            f"{want.width}x{want.height} input: wrong camera topic? (map it with --camera {camera}=/topic; "
            "--allow-upscale if small frames are right, as the simulated robot's for a 224 x 384 model)"
        )
    if first_shape.setdefault(camera, frame.shape) != frame.shape:
        raise FrameError(f"camera {camera!r} frame size changed from {first_shape[camera]} to {frame.shape}")


def replay_episode(
    policy: OnnxPolicy, episode: Episode, thumbnails: list | None = None, upscale: bool = False
) -> EpisodeReplay:
    """One episode; a problem becomes `error` (naming the decision and why), never an exception."""
    result = EpisodeReplay(episode.number, episode.goal, len(episode.decisions), recorded_outcome=episode.outcome)
    if episode.problem:
        result.error = episode.problem
        return result
    if not episode.decisions:
        result.error = "no decisions recorded after the goal"
        return result
    card_cameras = {c.name: c.preprocessing for c in policy.card.cameras}
    policy.reset(episode.goal)
    holding, shapes, latencies = False, {}, []
    for d in episode.decisions:
        where = f"decision {d.index} (recorded {d.action!r})"
        try:
            executed = action_by_name(d.action).index
            frames = {}
            for camera, (_, raw) in d.frames.items():
                frames[camera] = decode_rgb(raw, f"camera {camera!r}")
                _check_frame(frames[camera], camera, card_cameras, shapes, upscale)
            start = time.perf_counter()
            step = policy.act(frames, holding)
            latencies.append((time.perf_counter() - start) * 1000)
        except (FrameError, UnknownActionError, KeyError, ValueError) as err:
            result.error = f"{where}: {err}"
            break
        policy.executed(executed)
        result.recorded.append(d.action)
        result.predicted.append(step.name)
        if step.name != d.action and result.first_divergence is None:
            result.first_divergence = {"step": d.index, "recorded": d.action, "predicted": step.name}
        if thumbnails is not None:
            thumbnails.append((frames, d.action, step.name))
        if d.done is not None and d.done.holding is not None:
            holding = d.done.holding
        elif d.action in ("p", "d"):
            holding = d.action == "p"
    n = len(result.recorded)
    result.agreement = sum(a == b for a, b in zip(result.recorded, result.predicted, strict=True)) / n if n else 0.0
    result.recorded_inference_ms = _median([d.recorded_inference_ms for d in episode.decisions])
    result.recorded_decision_ms = _median([d.recorded_decision_ms for d in episode.decisions])
    result.replay_inference_ms = _median(latencies)
    return result


def confusion(results: list[EpisodeReplay]) -> dict:
    pairs = [(r, p) for e in results for r, p in zip(e.recorded, e.predicted, strict=True)]
    labels = [a for a in ACTION_NAMES if any(a in pair for pair in pairs)]
    index = {a: i for i, a in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for r, p in pairs:
        matrix[index[r], index[p]] += 1
    return {"labels": labels, "rows": "recorded", "columns": "predicted", "matrix": matrix.tolist()}


def replay(
    bag_path: str | Path,
    model_dir: str | Path,
    cameras: dict[str, str] | None = None,
    namespace: str = "",
    robot: str | None = None,
    embodiment: str | None = None,
    progress: bool = True,
    keep_thumbnails: int = 3,
    allow_upscale: bool = False,
) -> tuple[dict, dict]:
    """Returns (results as JSON-ready dict, thumbnails per episode for the report). Frames smaller than the
    model's input are refused (a wrong topic, usually) unless `allow_upscale`."""
    policy = OnnxPolicy(model_dir, embodiment, greedy=True, robot=robot)
    topics = {c.name: protocol.camera_topic(c.name) for c in policy.card.cameras} | (cameras or {})
    unknown = set(topics) - {c.name for c in policy.card.cameras}
    if unknown:
        raise BagError(f"--camera names {sorted(unknown)} are not cameras of the model ({policy.card.name})")
    bag = FlareBag(bag_path, topics, namespace)
    results, thumbs = [], {}
    try:
        with tqdm(desc="replay", unit="ep", disable=not progress) as bar:
            for episode in bag.episodes():
                keep = [] if len(thumbs) < keep_thumbnails else None
                result = replay_episode(policy, episode, keep, allow_upscale)
                if keep:
                    thumbs[episode.number] = keep
                if result.error:
                    bar.write(f"episode {episode.number} ({episode.goal!r}) not replayed: {result.error}")
                results.append(result)
                bar.update()
    finally:
        bag.close()
    replayed = [r for r in results if not r.error]
    decisions = sum(len(r.recorded) for r in replayed)
    agree = sum(a == b for r in replayed for a, b in zip(r.recorded, r.predicted, strict=True))
    summary = {
        "bag": str(bag_path),
        "model": str(model_dir),
        "model_name": policy.card.name,
        "episodes": len(results),
        "episodes_replayed": len(replayed),
        "episodes_with_errors": len(results) - len(replayed),
        "decisions": decisions,
        "agreement": agree / decisions if decisions else None,
        "episodes_identical": sum(r.first_divergence is None for r in replayed),
        "recorded_successes": sum(bool(r.recorded_outcome.get("success")) for r in results),
        "replay_inference_ms_median": _median([r.replay_inference_ms for r in replayed]),
        "recorded_inference_ms_median": _median([r.recorded_inference_ms for r in replayed]),
        "recorded_decision_ms_median": _median([r.recorded_decision_ms for r in replayed]),
    }
    report = {"summary": summary, "confusion": confusion(replayed), "episodes": [asdict(r) for r in results]}
    return report, thumbs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", help="ROS 2 bag directory (MCAP or sqlite3)")
    parser.add_argument("model", help="model directory with policy.onnx + model.json")
    parser.add_argument("--out", default="", help="report directory (default: <bag>_replay_<model name>)")
    parser.add_argument("--camera", action="append", default=[], metavar="NAME=TOPIC",
                        help="bag topic of a model camera (default flare/camera/NAME/image)")  # fmt: skip
    parser.add_argument("--namespace", default="", help="namespace the graph ran in")
    parser.add_argument("--robot", default=None, help="mask what this embodiment cannot do, as on the robot")
    parser.add_argument("--embodiment", default=None, help="the card's embodiment to use (default its first)")
    parser.add_argument(
        "--allow-upscale", action="store_true", help="replay frames smaller than the model's input, upscaled"
    )
    args = parser.parse_args(argv)
    try:
        cameras = dict(item.split("=", 1) for item in args.camera)
    except ValueError:
        parser.error("--camera takes NAME=TOPIC, e.g. --camera nav=/camera/color/image_raw")
    try:
        report, thumbs = replay(args.bag, args.model, cameras, args.namespace, args.robot, args.embodiment,
                                allow_upscale=args.allow_upscale)  # fmt: skip
    except (BagError, PolicyLoadError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    from flare_bag.report import write_report

    out = Path(args.out or f"{str(args.bag).rstrip('/')}_replay_{report['summary']['model_name']}")
    write_report(report, thumbs, out)  # replay.json, report.md, plots
    s = report["summary"]
    agreement = "n/a" if s["agreement"] is None else f"{s['agreement']:.1%}"
    print(f"{s['episodes_replayed']}/{s['episodes']} episodes, {s['decisions']} decisions: agreement {agreement}, "
          f"{s['episodes_identical']} episodes identical; replay inference {s['replay_inference_ms_median']} ms "
          f"(recorded {s['recorded_inference_ms_median']} ms); report in {out}")  # fmt: skip
    if s["episodes_with_errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()

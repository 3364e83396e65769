"""Replay report: replay.json, a short report.md, and the plots a person would rather look at: agreement over
episode time, the confusion matrix, and film strips of frames with the recorded vs predicted action."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _agreement_over_time(episodes: list[dict], path: Path) -> None:
    longest = max((len(e["recorded"]) for e in episodes), default=0)
    agree = np.zeros(longest)
    count = np.zeros(longest)
    for e in episodes:
        for t, (r, p) in enumerate(zip(e["recorded"], e["predicted"], strict=True)):
            agree[t] += r == p
            count[t] += 1
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if longest:
        steps = np.arange(longest)
        ax.plot(steps, agree / np.maximum(count, 1), marker="o", ms=3, label="agreement")
        ax2 = ax.twinx()
        ax2.bar(steps, count, alpha=0.15, color="grey")
        ax2.set_ylabel("episodes reaching this step")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("decision index in the episode")
    ax.set_ylabel("recorded == predicted")
    ax.set_title("Action agreement over episode time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _confusion(confusion: dict, path: Path) -> None:
    labels, matrix = confusion["labels"], np.array(confusion["matrix"])
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * max(len(labels), 1), 1.0 + 0.5 * max(len(labels), 1)))
    if len(labels):
        ax.imshow(matrix, cmap="Blues")
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted (replayed model)")
    ax.set_ylabel("recorded")
    ax.set_title("Confusion")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _film_strip(number: int, steps: list, path: Path, max_steps: int = 12) -> None:
    steps = steps[:max_steps]
    fig, axes = plt.subplots(1, len(steps), figsize=(1.6 * len(steps), 2.1), squeeze=False)
    for ax, (frames, recorded, predicted) in zip(axes[0], steps, strict=True):
        ax.imshow(next(iter(frames.values())))
        same = recorded == predicted
        ax.set_title(f"rec {recorded}\npred {predicted}", fontsize=8, color="black" if same else "red")
        for spine in ax.spines.values():
            spine.set_color("black" if same else "red")
            spine.set_linewidth(1 if same else 3)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"episode {number}: first camera at each decision (red: disagreement)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: dict, thumbnails: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "replay.json").write_text(json.dumps(report, indent=2) + "\n")
    episodes = [e for e in report["episodes"] if not e["error"]]
    _agreement_over_time(episodes, out / "agreement_over_time.png")
    _confusion(report["confusion"], out / "confusion.png")
    strips = []
    for number, steps in thumbnails.items():
        name = f"episode_{number}.png"
        _film_strip(number, steps, out / name)
        strips.append(name)
    s = report["summary"]
    agreement = "n/a" if s["agreement"] is None else f"{s['agreement']:.1%}"
    lines = [
        f"# Replay of `{s['bag']}` through `{s['model_name']}`",
        "",
        f"- episodes replayed: {s['episodes_replayed']} of {s['episodes']} ({s['episodes_with_errors']} with errors)",
        f"- decisions: {s['decisions']}, agreement {agreement}, episodes identical: {s['episodes_identical']}",
        f"- recorded successes: {s['recorded_successes']}",
        f"- inference here (median): {s['replay_inference_ms_median']} ms; recorded on the run: "
        f"{s['recorded_inference_ms_median']} ms; recorded decision latency (end of motion -> command): "
        f"{s['recorded_decision_ms_median']} ms",
        "",
        "Open loop: after the first divergence the frames are where the recorded policy went, so agreement past it",
        "is conditional on the recorded history, and success can only be judged closed-loop.",
        "",
        "| episode | goal | decisions | agreement | first divergence (step: recorded -> predicted) | outcome |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for e in report["episodes"]:
        if e["error"]:
            lines.append(f"| {e['episode']} | {e['goal']} | {e['decisions']} | not replayed: {e['error']} | | |")
            continue
        d = e["first_divergence"]
        div = "none" if d is None else f"{d['step']}: {d['recorded']} -> {d['predicted']}"
        outcome = ", ".join(f"{k} {v}" for k, v in e["recorded_outcome"].items()) or "unknown"
        lines.append(f"| {e['episode']} | {e['goal']} | {e['decisions']} | {e['agreement']:.0%} | {div} | {outcome} |")
    lines += ["", "![agreement](agreement_over_time.png)", "", "![confusion](confusion.png)", ""]
    lines += [f"![{name}]({name})" for name in strips]
    (out / "report.md").write_text("\n".join(lines) + "\n")

"""Results table (markdown) and learning curves (PNG) from run directories."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from flare_sim import FAMILIES as GRIDHOUSE_FAMILIES
from flare_sim import HELD_OUT_FAMILIES
from flare_training.thor.tasks import TASKS as THOR_TASKS

ALL_FAMILIES = (*GRIDHOUSE_FAMILIES, *THOR_TASKS)


def _columns(runs: list[dict]) -> list[str]:
    """The families some run was evaluated on (gridhouse's or AI2-THOR's), in their usual order."""
    seen = {f for r in runs if r["final"] for f in r["final"]["results"]}
    return [f for f in ALL_FAMILIES if f in seen] or list(GRIDHOUSE_FAMILIES)


def _load(run: Path) -> dict:
    final = json.loads((run / "eval.json").read_text()) if (run / "eval.json").exists() else None
    curve = json.loads((run / "evals.json").read_text()) if (run / "evals.json").exists() else []
    return {"name": run.name, "final": final, "curve": curve}


def _success(result: dict) -> str:
    """Success rate with its standard error, sqrt(p (1 - p) / n), where the episode count is known."""
    p, n = result["success"], result.get("episodes")
    return f"{p:.1%} ± {math.sqrt(p * (1 - p) / n):.1%}" if n else f"{p:.0%}"


def results_table(runs: list[dict]) -> str:
    families = _columns(runs)
    header = (
        "| run | env steps | "
        + " | ".join(f + (" (held out)" if f in HELD_OUT_FAMILIES else "") for f in families)
        + " |"
    )
    lines = [header, "|" + " --- |" * (len(families) + 2)]
    for run in runs:
        final = run["final"]
        if final is None:
            lines.append(f"| {run['name']} | (no final evaluation) |" + " |" * len(families))
            continue
        cells = [_success(final["results"][f]) if f in final["results"] else "-" for f in families]
        lines.append(f"| {run['name']} | {final.get('env_steps', 0):,} | " + " | ".join(cells) + " |")
    episodes = next((r["final"]["episodes"] for r in runs if r["final"]), "?")
    lines.append("")
    how = (
        "argmax of the policy (as the robot's policy node)"
        if any(r["final"].get("greedy") for r in runs if r["final"])
        else "sampling from the policy"
    )
    lines.append(f"Success rate ± standard error over {episodes} unseen (evaluation-split) houses per family, {how}.")
    return "\n".join(lines)


def plot_curves(runs: list[dict], path: Path) -> Path:
    """One panel per family the runs were evaluated on during training (their training families); a run keeps
    one colour in every panel, and one legend below names them all."""
    seen = {f for run in runs for e in run["curve"] for f in e["results"]}
    families = [f for f in ALL_FAMILIES if f in seen]
    fig, axes = plt.subplots(1, len(families), figsize=(4 * len(families), 3.8), sharey=True, squeeze=False)
    axes = axes[0]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, family in zip(axes, families, strict=True):
        for i, run in enumerate(runs):
            points = [(e["env_steps"], e["results"][family]["success"]) for e in run["curve"] if family in e["results"]]
            if points:
                x, y = zip(*points, strict=True)
                ax.plot(x, y, marker="o", markersize=3, color=colours[i % len(colours)], label=run["name"])
        ax.set_title(family)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("success on unseen houses")
    axes[0].set_ylim(0, 1)
    handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    fig.legend(handles.values(), handles.keys(), fontsize=8, loc="lower center", ncol=min(len(handles), 4))
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run_dirs: list[Path], out: Path, evals: Path | None = None) -> None:
    """table.md (each run's final evaluation) and learning_curves.png; with `evals`, a directory of
    `flare_training eval --out` files named <run>.json, also table_evals.md from those (larger evaluations)."""
    runs = [_load(r) for r in run_dirs]
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(results_table(runs) + "\n")
    if any(r["curve"] for r in runs):
        plot_curves([r for r in runs if r["curve"]], out / "learning_curves.png")
    print(results_table(runs))
    if evals is not None:
        extra = [
            {**run, "final": json.loads((evals / f"{run['name']}.json").read_text())}
            for run in runs
            if (evals / f"{run['name']}.json").exists()
        ]
        (out / "table_evals.md").write_text(results_table(extra) + "\n")
        print(results_table(extra))

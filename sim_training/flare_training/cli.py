"""Command line: `python -m flare_training {perception,bc,ppo,grpo,eval,export,import,report} --help`.

Every hyper-parameter is a field of a dataclass config (BCConfig, PPOConfig, GRPOConfig and their shared
RunConfig, ModelConfig) and becomes a flag here by name, so each one is named once.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import sys
import typing
from pathlib import Path

from flare_sim import FAMILIES
from flare_sim.vector import EnvWorkerError
from flare_training.envs import ENVS
from flare_training.rundir import RunDirectoryBusy
from flare_training.thor.controller import ThorSetupError
from flare_training.thor.tasks import TASKS as THOR_TASKS

ALL_FAMILIES = (*FAMILIES, *THOR_TASKS)  # gridhouse's and AI2-THOR's; each simulator checks its own


def _field_comments(cls) -> dict[str, str]:
    """Each field's comment in the config's source (inline, else the comment lines just above it), its base
    classes' included: its --help, so a hyper-parameter is explained once, where it is defined."""
    comments = {}
    for base in reversed([c for c in cls.__mro__ if dataclasses.is_dataclass(c)]):
        comments.update(_class_field_comments(base))
    return comments


def _class_field_comments(cls) -> dict[str, str]:
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    comments, above = {}, []
    for line in lines:
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("#").strip())
            continue
        field = re.match(r"(\w+)\s*:[^#]*?=[^#]*?(?:#\s*(.*))?$", text)
        if field:
            comment = field.group(2) or " ".join(above)
            if comment:
                comments[field.group(1)] = comment.replace("%", "%%")  # argparse formats help with %
        above = []
    return comments


def _add_dataclass(parser: argparse.ArgumentParser, cls, prefix: str = "") -> None:
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    own = cls.__dict__.get("__annotations__", {})  # the command's own options first, then the shared ones
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name not in own):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            _add_dataclass(parser.add_argument_group(f.name), kind, prefix=f"{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = "--" + (prefix + f.name).replace("_", "-").replace(".", "-")
        dest = prefix + f.name
        help_text = f"{comments[f.name]} (default: {default})" if f.name in comments else f"(default: {default})"
        if kind is bool:
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif typing.get_origin(kind) is tuple:
            parser.add_argument(flag, dest=dest, nargs="+", default=default, choices=ALL_FAMILIES, help=help_text)
        elif f.name == "env":
            parser.add_argument(flag, dest=dest, default=default, choices=ENVS, help=help_text)
        else:
            parser.add_argument(flag, dest=dest, type=kind, default=default, help=help_text)


def _build(cls, args: argparse.Namespace, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], args, prefix=f"{f.name}.")
        else:
            value = getattr(args, prefix + f.name)
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        _run(args)
    except (ThorSetupError, EnvWorkerError, RunDirectoryBusy, ValueError) as err:  # say what to do, in one line
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    from flare_core.model_card import CACHE_DTYPES, CACHE_LAYOUTS, WEIGHT_TYPES
    from flare_training.bc import BCConfig
    from flare_training.grpo import GRPOConfig
    from flare_training.perception import PerceptionConfig
    from flare_training.ppo import PPOConfig

    parser = argparse.ArgumentParser(prog="python -m flare_training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    perception = sub.add_parser("perception", help="pretrain the frozen visual encoder (gridhouse's DINOv2 stand-in)")
    _add_dataclass(perception, PerceptionConfig)
    bc = sub.add_parser("bc", help="collect expert demonstrations and train by behaviour cloning")
    _add_dataclass(bc, BCConfig)
    ppo = sub.add_parser("ppo", help="PPO fine-tuning (FLaRe recipe) from a BC checkpoint, or from scratch")
    _add_dataclass(ppo, PPOConfig)
    grpo = sub.add_parser("grpo", help="GRPO fine-tuning (SimpleVLA-RL: groups, no critic) from a BC checkpoint")
    _add_dataclass(grpo, GRPOConfig)
    ev = sub.add_parser("eval", help="success per task family on unseen houses")
    ev.add_argument("checkpoint", help="checkpoint file or run directory")
    ev.add_argument("--episodes", type=int, default=100, help="houses per family")
    ev.add_argument("--families", nargs="+", default=None, choices=ALL_FAMILIES,
                    help="default: every family of the simulator the checkpoint was trained in")  # fmt: skip
    ev.add_argument("--greedy", action="store_true", help="argmax instead of sampling")
    ev.add_argument("--split", default="eval", choices=("eval", "train"),
                    help="eval: unseen houses; train: houses of the training split (model selection)")  # fmt: skip
    ev.add_argument("--why", action="store_true",
                    help="gridhouse ObjectNav, Pickup, Fetch, RoomVisit: how failed episodes ended")  # fmt: skip
    ev.add_argument("--out", default="", help="write JSON results here")
    exp = sub.add_parser("export", help="write policy.onnx + model.json (the robot-side model) from a checkpoint; "
                         "a FLaRe-family run also gets goal_encoder.onnx + tokenizer.json")  # fmt: skip
    exp.add_argument("checkpoint", help="checkpoint file or run directory")
    exp.add_argument("out", help="model directory to write, e.g. models/gridhouse_demo")
    exp.add_argument("--name", default=None, help="model name in the card (default: the directory name)")
    exp.add_argument("--cache-layout", choices=CACHE_LAYOUTS, default="concat",
                     help="concat: past in, past + 1 out (any provider); shared: one in-place buffer (CPU, no "
                          "per-step copy of the past; see benchmarks/policy_latency.py)")  # fmt: skip
    exp.add_argument("--cache-dtype", choices=CACHE_DTYPES, default="float32",
                     help="int8 (with --cache-layout shared): keys/values in int8, scales calibrated on "
                          "expert episodes")  # fmt: skip
    exp.add_argument("--weights", choices=WEIGHT_TYPES, default="float32",
                     help="int8: dynamically quantized weights, ~4x fewer bytes per step (FLaRe family: DINOv2's "
                          "matrix products only)")  # fmt: skip
    imp = sub.add_parser("import", help="import one of FLaRe's released checkpoints (IL .ckpt or RL .pt) as a run")
    imp.add_argument("checkpoint", help="FLaRe_IL_50000.ckpt or an RL checkpoint (saved as model.ckpt)")
    imp.add_argument("--out", required=True, help="run directory to write, e.g. runs/flare_objectnav")
    imp.add_argument("--dinov2", required=True, help="local DINOv2-S/14 directory (hf download facebook/dinov2-small)")
    imp.add_argument("--t5", required=True, help="local t5-small directory with config.json and tokenizer.json")
    rep = sub.add_parser("report", help="results table (markdown) and learning-curve plot from run directories")
    rep.add_argument("runs", nargs="+", help="run directories (each with eval.json, and evals.json for PPO)")
    rep.add_argument("--out", default="docs/results", help="directory for results.md fragments and plots")
    rep.add_argument("--evals", default=None, help="directory of `eval --out` files named <run>.json: a second table")
    return parser


def _run(args: argparse.Namespace) -> None:
    from flare_training.bc import BCConfig
    from flare_training.grpo import GRPOConfig
    from flare_training.perception import PerceptionConfig
    from flare_training.ppo import PPOConfig

    if args.command == "perception":
        from flare_training.perception import train_perception

        train_perception(_build(PerceptionConfig, args))
    elif args.command == "bc":
        from flare_training.bc import train_bc

        train_bc(_build(BCConfig, args))
    elif args.command == "ppo":
        from flare_training.ppo import train_ppo

        train_ppo(_build(PPOConfig, args))
    elif args.command == "grpo":
        from flare_training.grpo import train_grpo

        train_grpo(_build(GRPOConfig, args))
    elif args.command == "eval":
        from flare_training.checkpoint import load_checkpoint
        from flare_training.envs import simulator_of
        from flare_training.evaluate import evaluate_policy, save_results
        from flare_training.failures import FailureTally

        model, adapter, payload = load_checkpoint(args.checkpoint)
        sim = simulator_of(payload.get("config", {}))
        families = sim.check(tuple(args.families or sim.families))
        if args.why and sim.thor is not None:
            raise SystemExit("eval --why reads the gridhouse's world state; AI2-THOR runs have no such breakdown")
        tally = FailureTally()
        results = evaluate_policy(model, adapter, families, args.episodes, args.split, args.greedy, sim=sim,
                                  on_episode_end=tally if args.why else None,
                                  on_step=tally.step if args.why else None)  # fmt: skip
        for family, r in results.items():
            wrong_end = 1 - r["success"] - r["step_limit"] - r["timeout"]
            timeouts = f", simulator timeouts {r['timeout']:6.1%}" if r["timeout"] else ""
            print(f"{family:<20} success {r['success']:6.1%}  mean steps {r['mean_steps']:5.1f}  failed: "
                  f"ended off the goal {wrong_end:6.1%}, out of steps {r['step_limit']:6.1%}{timeouts}")  # fmt: skip
        if args.why:
            print("\n".join(tally.lines()))
        if args.out:
            save_results(args.out, results, kind=payload.get("kind"), env_steps=payload.get("env_steps", 0),
                         episodes=args.episodes, greedy=args.greedy, split=args.split)  # fmt: skip
    elif args.command == "export":
        from flare_training.export import export_policy

        try:
            out = export_policy(args.checkpoint, args.out, args.name, args.cache_layout, args.weights, args.cache_dtype)
        except (OSError, ValueError) as err:  # a missing checkpoint, an option the model family does not take
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        print(f"exported {out} (cache {args.cache_layout}, {args.cache_dtype}; {args.weights} weights)")
    elif args.command == "import":
        from flare_training.flare_import import CheckpointMismatch, import_flare

        try:
            path = import_flare(args.checkpoint, args.out, args.dinov2, args.t5)
        except (CheckpointMismatch, OSError, ValueError) as err:  # OSError: FileNotFoundError, unreadable files
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        print(f"imported {args.checkpoint} -> {path}; export it with `python -m flare_training export {args.out} DIR`")
    else:
        from flare_training.report import write_report

        write_report([Path(r) for r in args.runs], Path(args.out), Path(args.evals) if args.evals else None)
        print(json.dumps({"written": str(args.out)}))


if __name__ == "__main__":
    main()

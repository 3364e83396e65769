"""Checkpoints: model + everything needed to rebuild its inputs (cameras, tokenizer) + training state.

Writes are atomic (temporary file, then rename), so a run killed mid-save keeps its previous checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import torch

from flare_core.goal_tokenizer import GoalTokenizer
from flare_core.model_card import CameraSpec
from flare_core.preprocessing import PreprocessConfig
from flare_training.inputs import ObservationAdapter
from flare_training.model import ActorCritic, ModelConfig

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, model: ActorCritic, adapter: ObservationAdapter, **state: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(model, ActorCritic):  # FLaRe's family, as the trainer drives it
        from flare_training.flare_import import save_flare_checkpoint

        return save_flare_checkpoint(path, model.net, adapter.tokenizer, **state)
    payload = {
        "model_config": asdict(model.config),
        "cameras": [{"name": c.name, "preprocessing": c.preprocessing.to_dict()} for c in adapter.cameras],
        "tokenizer": {"vocab": list(adapter.tokenizer.vocab), "max_tokens": adapter.tokenizer.max_tokens},
        "model": model.state_dict(),
        **state,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def camera_specs(payload: dict[str, Any]) -> tuple[CameraSpec, ...]:
    """The cameras a checkpoint of either family records (name and preprocessing each)."""
    return tuple(CameraSpec(c["name"], PreprocessConfig.from_dict(c["preprocessing"])) for c in payload["cameras"])


def read_checkpoint(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint file of a run directory (or the file itself) and its payload, of either model family."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here (train one with `python -m flare_training bc ...`)")
    return path, torch.load(path, map_location="cpu", weights_only=False)


def load_checkpoint(
    path: str | Path, **config_overrides: Any
) -> tuple[ActorCritic, ObservationAdapter, dict[str, Any]]:
    """Rebuild model and adapter; `config_overrides` change architecture switches (e.g. shared_critic). A FLaRe-
    family checkpoint comes back as `FlareTrainable`, which the trainer and evaluation drive alike."""
    path, payload = read_checkpoint(path)
    if payload.get("family") == "flare":
        from flare_training.flare_import import load_flare_run

        if config_overrides.get("shared_critic"):
            raise ValueError(f"{path}: FLaRe's family has a separate critic network; --shared-critic does not apply")
        return (*load_flare_run(payload), payload)
    stored = {"fusion": "pooled", **payload["model_config"]}  # checkpoints from before `fusion` existed
    config = ModelConfig(**{**stored, **config_overrides})
    cameras = camera_specs(payload)
    adapter = ObservationAdapter(
        GoalTokenizer(payload["tokenizer"]["vocab"], payload["tokenizer"]["max_tokens"]), cameras
    )
    model = ActorCritic(config, adapter.camera_shapes, adapter.tokenizer.vocab)
    try:
        missing, unexpected = model.load_state_dict(_renamed(payload["model"]), strict=False)
    except RuntimeError as err:  # shape mismatches: a checkpoint from another architecture or vocabulary
        raise RuntimeError(f"{path}: checkpoint does not fit the model its own config describes: {err}") from None
    # Switching the critic layout (separate <-> shared) leaves critic weights to initialise fresh; nothing else may.
    bad = [k for k in missing + unexpected if not (k.startswith("critic.") or k.startswith("actor.heads.value"))]
    if bad:
        raise RuntimeError(f"{path}: checkpoint does not fit the model: {bad[:5]}")
    return model, adapter, payload


_RENAMED = {
    ".attn_norm.": ".attention_norm.",
    ".mlp_norm.": ".ffn_norm.",
    ".attn.out.": ".attention.wo.",
    ".mlp.gate.": ".feed_forward.w1.",
    ".mlp.down.": ".feed_forward.w2.",
    ".mlp.up.": ".feed_forward.w3.",
}
_STEP_TOKENS = ("goal.", "film.", "prev_action.", "holding.", "fuse.", "time.")


def _renamed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoints written before the decoder took LLaMA's (FLaRe's) parameter names: `decoder.blocks.i.attn.qkv`
    (q, k, v stacked) and `mlp.gate/up/down` become `decoder.layers.i.attention.wq/wk/wv` and
    `feed_forward.w1/w3/w2`, the step-token parts move from `decoder.` to `tokens.`."""
    out = {}
    for key, value in state.items():
        net, dot, rest = key.partition(".decoder.")
        if not dot:
            out[key] = value
            continue
        if rest.startswith(_STEP_TOKENS):
            out[f"{net}.tokens.{rest}"] = value
            continue
        rest = rest.replace("blocks.", "layers.", 1)
        if ".attn.qkv." in rest:
            for name, part in zip(("wq", "wk", "wv"), value.chunk(3), strict=True):
                out[f"{net}.decoder.{rest.replace('attn.qkv', f'attention.{name}')}"] = part
            continue
        for old, new in _RENAMED.items():
            rest = rest.replace(old, new)
        out[f"{net}.decoder.{rest}"] = value
    return out


def restore_training(path: Path, payload: dict, optimizer: torch.optim.Optimizer, kind: str, config) -> tuple:
    """Resume an RL run from its checkpoint: optimiser state and torch's RNG restored; returns the update, the
    env steps and the learning-curve evaluations so far. A run of another kind, or given other training
    settings than its own (`config`), is refused."""
    if payload.get("kind") != kind:
        raise RuntimeError(f"{path} is a {payload.get('kind')} checkpoint, not a {kind.upper()} run to resume")
    check_resume(payload.get("config"), config)
    try:
        optimizer.load_state_dict(payload["optimizer"])
    except ValueError:  # parameter groups of another shape: a run written before the decoder took LLaMA's names
        fix = f"continue with a new run from it: --init {path} --out NEW_DIR"
        raise RuntimeError(f"{path}: its optimizer state fits an older parameter layout; {fix}") from None
    torch.set_rng_state(payload["torch_rng"])
    return payload["update"], payload["env_steps"], payload["evals"]


# What a resumed run may change: where it writes, how far it goes, how it is evaluated, the machine's share.
RESUMABLE = {"out", "init", "visual_from", "total_env_steps", "eval_every", "eval_episodes", "final_eval_episodes",
             "env_workers", "threads", "thor", "device"}  # fmt: skip


def check_resume(saved: dict | None, config, resumable: set[str] = RESUMABLE) -> None:
    """A resumed run keeps its algorithm: a setting given differently from the one it was trained with (which
    the checkpoint keeps) is refused, naming the flags, instead of silently mixing two runs in one. A setting
    the checkpoint does not name (a run written before the option existed) was trained with its default: a new
    option's default keeps what the code did before it."""
    if not saved:
        return
    given = asdict(config)
    trained = {**_defaults(config), **saved}
    differ = [k for k in given if k not in resumable and k in trained and _plain(trained[k]) != _plain(given[k])]
    if differ:
        flags = " ".join(_flag(k, _plain(trained[k])) for k in differ)
        raise ValueError(
            f"{config.out} was trained with {flags}; resume it with the same settings, or give a new --out"
        )


def _defaults(config) -> dict[str, Any]:
    """The config class's default for each of its settings, as `asdict` writes them (nested configs as dicts)."""
    out = {}
    for f in fields(config):
        if f.default is not MISSING or f.default_factory is not MISSING:
            value = f.default if f.default is not MISSING else f.default_factory()
            out[f.name] = asdict(value) if is_dataclass(value) else value
    return out


def _flag(name: str, value) -> str:
    """The command-line flag that gives `name` this value (booleans are `--x` / `--no-x`)."""
    flag = name.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}"


def _plain(value):
    return list(value) if isinstance(value, tuple | list) else value

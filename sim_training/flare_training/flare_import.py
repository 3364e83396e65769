"""Import FLaRe's released checkpoints into a run directory of this stack (`python -m flare_training import`).

Two upstream formats (FLaRe's `training/offline/train_utils.py:load_pl_ckpt_allenact`, allenact's
`engine.py` checkpoint writer):
- Lightning (`FLaRe_IL_50000.ckpt`, imitation): `state_dict`, keys prefixed `model.`, the actor head as
  `actor.weight|bias`, DINOv2's own weights under `visual_encoder.image_encoder.` (ignored: DINOv2 comes from
  `--dinov2`, as upstream loads it), no critic: the value head starts fresh (orthogonal, bias 0) and the
  separate critic network starts as a copy of the actor's, as FLaRe starts RL;
- AllenAct (`FLaRe_*_sparse_reward_*.pt`, RL, saved by FLaRe's downloader as `model.ckpt`):
  `model_state_dict` with the critic network under `critic_tsfm.`, and `total_steps`.
Every key of the model must be in the file with its shape and nothing else may be: a file that differs is refused
with the missing, unexpected and reshaped keys named, and nothing is written. SPOC's own checkpoints
(`DINOv2-ViTs-3-CHORES-*`, `SigLIP-*`) decode with nn.TransformerDecoder and cross-attention into the goal and have
an `action_classifier` head: a different architecture, named as such in the refusal.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from dataclasses import asdict, replace
from pathlib import Path

import torch

from flare_core.goal_tokenizer import SubwordGoalTokenizer
from flare_core.preprocessing import spoc_camera
from flare_training.checkpoint import CHECKPOINT_NAME, camera_specs
from flare_training.flare_adapter import FlareTrainable
from flare_training.flare_model import FlareActorCritic, FlareConfig
from flare_training.inputs import ObservationAdapter

TOKENIZER_FILE = "tokenizer.json"
_LISTED = 12  # keys named per kind of difference; the rest are counted
_SPOC_MARKERS = ("action_classifier.", "decoder.layers.0.self_attn.", "decoder.layers.0.multihead_attn.")


class CheckpointMismatch(RuntimeError):
    """A file that is not one of FLaRe's checkpoints for this architecture; the message names the differences."""


def read_payload(path: Path) -> dict:
    """The checkpoint's top-level dict; tensors only where possible (a pickle can run code), Lightning's extras
    (hyper-parameters as Python objects) when the file needs them."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            payload = torch.load(path, map_location="cpu", weights_only=False)
    # ImportError, AttributeError: the file pickles classes this environment has not got
    except (
        RuntimeError,
        EOFError,
        OSError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        ImportError,
        AttributeError,
    ) as err:
        raise CheckpointMismatch(f"{path}: not a readable torch checkpoint (truncated or corrupt?): {err}") from None
    if not isinstance(payload, dict):
        raise CheckpointMismatch(f"{path}: expected a checkpoint dict, found {type(payload).__name__}")
    return payload


def upstream_state(payload: dict, path: Path, model: FlareActorCritic) -> tuple[dict, str, int]:
    """The model's state (without DINOv2) from either format -> (state, format, env steps); refuses mismatches."""
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("dinov2.")}
    if "model_state_dict" in payload:
        state = dict(payload["model_state_dict"])
        _tie_t5_embeddings(state, expected)
        _check(state, expected, path, "AllenAct RL checkpoint (model_state_dict)")
        return state, "allenact", int(payload.get("total_steps", 0))
    if "state_dict" in payload:
        state = {}
        for key, value in payload["state_dict"].items():
            key = key.removeprefix("model.")
            if key.startswith("visual_encoder.image_encoder."):
                continue  # DINOv2, frozen, loaded from --dinov2
            state[{"actor.weight": "actor.linear.weight", "actor.bias": "actor.linear.bias"}.get(key, key)] = value
        actor = {k: v for k, v in expected.items() if not k.startswith(("critic_tsfm.", "critic."))}
        _tie_t5_embeddings(state, actor)
        _check(state, actor, path, "Lightning IL checkpoint (state_dict, keys 'model.')")
        fresh = {k: v for k, v in expected.items() if k.startswith("critic.")}  # the value head: a fresh init
        critic = {f"critic_tsfm.{k}": v for k, v in {**state, **fresh}.items()}
        return {**state, **fresh, **critic}, "lightning", 0
    raise CheckpointMismatch(
        f"{path}: neither a Lightning checkpoint ('state_dict') nor an AllenAct one ('model_state_dict'); "
        f"its top-level keys are {sorted(payload)[:_LISTED]}"
    )


def _check_dinov2(directory: Path) -> None:
    """FLaRe runs DINOv2-S/14 (384 wide, 14 px patches); another size or a folder without weights is refused."""
    import json

    config = json.loads((directory / "config.json").read_text())
    size = (config.get("hidden_size"), config.get("patch_size"))
    if size != (384, 14):
        raise CheckpointMismatch(f"{directory}: DINOv2 with hidden size {size[0]} and patch {size[1]}, FLaRe's is "
                                 "DINOv2-S/14 (384, 14): download facebook/dinov2-small")  # fmt: skip
    if not any((directory / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        fetch = f"hf download facebook/dinov2-small --local-dir {directory}"
        raise FileNotFoundError(f"{directory}: no DINOv2 weights (model.safetensors); `{fetch}`")


def _tie_t5_embeddings(state: dict, expected: dict) -> None:
    """T5 ties `encoder.embed_tokens` to `shared`; files written by other transformers versions keep one."""
    for key in [k for k in expected if k.endswith("text_encoder.encoder.embed_tokens.weight")]:
        shared = key.replace("encoder.embed_tokens.weight", "shared.weight")
        if key not in state and shared in state:
            state[key] = state[shared]


def _check(state: dict, expected: dict, path: Path, kind: str) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        f"{k} {tuple(state[k].shape)} (model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or reshaped):
        return
    spoc = any(k.startswith(_SPOC_MARKERS) for k in unexpected)
    lines = [f"{path}: read as a {kind}, but it does not fit FLaRe's architecture; nothing was imported."]
    if spoc:
        lines.append(
            "  It is SPOC's own architecture (nn.TransformerDecoder with cross-attention into the goal, "
            "an action_classifier head, no KV-cache), which this importer does not take; FLaRe's IL checkpoint "
            "(FLaRe_IL_50000.ckpt) is the SPOC-trained model with FLaRe's decoder."
        )
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("different shape", reshaped)):
        if keys:
            more = f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
            lines.append(f"  {label} ({len(keys)}): {', '.join(keys[:_LISTED])}{more}")
    raise CheckpointMismatch("\n".join(lines))


def import_flare(checkpoint: str | Path, out: str | Path, dinov2: str | Path, t5: str | Path) -> Path:
    """Check `checkpoint` against FLaRe's architecture, then write out/checkpoint.pt (with DINOv2's weights and
    T5's tokenizer, so the run stands alone); returns the checkpoint path."""
    checkpoint, out, t5 = Path(checkpoint), Path(out), Path(t5)
    tokenizer = t5 / TOKENIZER_FILE
    for directory, repo in ((Path(dinov2), "facebook/dinov2-small"), (t5, "google-t5/t5-small")):
        if not (directory / "config.json").is_file():
            fetch = f"hf download {repo} --local-dir {directory}"
            raise FileNotFoundError(f"{directory}: no config.json; `{fetch}` on a machine with internet")
    if not tokenizer.is_file():
        fetch = f"hf download google-t5/t5-small tokenizer.json --local-dir {t5}"
        raise FileNotFoundError(f"{tokenizer}: missing; `{fetch}` on a machine with internet")
    _check_dinov2(Path(dinov2))
    payload = read_payload(checkpoint)
    config = FlareConfig(dinov2_path=str(dinov2), t5_path=str(t5))
    model = FlareActorCritic(config)
    state, fmt, env_steps = upstream_state(payload, checkpoint, model)
    model.load_state_dict({**state, **{k: v for k, v in model.state_dict().items() if k.startswith("dinov2.")}})
    out.mkdir(parents=True, exist_ok=True)
    source = {"path": str(checkpoint), "format": fmt, "sha256": _sha256(checkpoint), "total_steps": env_steps}
    words = SubwordGoalTokenizer.from_file(tokenizer, config.max_goal_tokens)
    return save_flare_checkpoint(out / CHECKPOINT_NAME, model, words, kind=f"flare-{fmt}", env_steps=env_steps,
                                 source=source)  # fmt: skip


def save_flare_checkpoint(path: Path, model: FlareActorCritic, tokenizer: SubwordGoalTokenizer, **state) -> Path:
    """The FLaRe family's checkpoint: configs, weights (DINOv2's included) and T5's tokenizer, all in one file."""
    payload = {
        "family": "flare",
        "flare_config": asdict(replace(model.config, dinov2_path="", t5_path="")),
        "dinov2_config": model.dinov2.backbone.config.to_dict(),
        "t5_config": model.visual_encoder.text_encoder.config.to_dict(),
        "cameras": [{"name": c, "preprocessing": spoc_camera().to_dict()} for c in model.config.cameras],
        "tokenizer": {"type": "t5", "json": tokenizer.tokenizer.to_str(), "max_tokens": tokenizer.max_tokens},
        "model": model.state_dict(),
        **state,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_flare_run(payload: dict) -> tuple[FlareTrainable, ObservationAdapter]:
    """The model as the trainer and evaluation drive it, and the inputs it reads (SPOC's cameras, T5's ids)."""
    tokenizer = SubwordGoalTokenizer.from_json(payload["tokenizer"]["json"], payload["tokenizer"]["max_tokens"])
    adapter = ObservationAdapter(tokenizer, camera_specs(payload))
    return FlareTrainable(load_flare_checkpoint(payload), tokenizer.pad_id), adapter


def load_flare_checkpoint(payload: dict) -> FlareActorCritic:
    """Rebuild an imported (or fine-tuned) FLaRe model from its checkpoint payload; no files besides it."""
    from transformers import Dinov2Config, Dinov2Model, T5Config, T5EncoderModel

    config = FlareConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in payload["flare_config"].items()})
    dinov2 = Dinov2Model(Dinov2Config.from_dict(payload["dinov2_config"]))
    t5 = T5EncoderModel(T5Config.from_dict(payload["t5_config"]))
    model = FlareActorCritic(config, dinov2, t5)
    model.load_state_dict(payload["model"])
    return model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

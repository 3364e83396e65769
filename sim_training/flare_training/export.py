"""Export a checkpoint's actor as a one-step ONNX graph with its KV-cache as explicit inputs and outputs, plus
the model card that every loader validates.

Graph (DESIGN.md contract 4), batch dimension dynamic:
  inputs   images.<camera> float32 [B, 3, H, W] (preprocessed by flare_core.preprocess with the card's config),
           goal_tokens int64 [B, K], prev_action int64 [B], holding int64 [B], step int64 [B],
           past_key_values.<i>.key|value float32 [B, heads, past_len, head_dim] (past_len 0 at an episode start)
  outputs  logits float32 [B, 20], present.<i>.key|value float32 [B, heads, past_len + 1, head_dim]
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from flare_core.actions import ACTION_NAMES
from flare_core.model_card import CacheSpec, ModelCard, Provenance
from flare_training.checkpoint import load_checkpoint
from flare_training.model import ActorCritic

OPSET = 17
POLICY_FILE = "policy.onnx"


def decode_with_past(decoder, head: nn.Module, x: torch.Tensor, past) -> tuple[torch.Tensor, ...]:
    """One fused token [B, 1, D] through the decoder, attending over explicit past keys/values; -> logits, presents."""
    presents = []
    for i, block in enumerate(decoder.blocks):
        attn = block.attn
        q, k, v = attn.project(block.attn_norm(x))
        keys = torch.cat([past[2 * i], k], dim=2)
        values = torch.cat([past[2 * i + 1], v], dim=2)
        presents += [keys, values]
        weights = torch.softmax((q @ keys.transpose(-1, -2)) / math.sqrt(attn.head_dim), dim=-1)
        y = (weights @ values).transpose(1, 2).reshape(x.shape[0], 1, attn.heads * attn.head_dim)
        x = x + attn.out(y)
        x = x + block.mlp(block.mlp_norm(x))
    return (head(decoder.norm(x))[:, 0], *presents)


class OnnxStep(nn.Module):
    """The actor for one step, attending over an explicit past instead of the training-time KVCache."""

    def __init__(self, model: ActorCritic) -> None:
        super().__init__()
        self.model = model
        self.cameras = model.visual.cameras

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(self.cameras)
        images, (goal, prev_action, holding, step), past = args[:n], args[n : n + 4], args[n + 4 :]
        visual = self.model.visual(dict(zip(self.cameras, images, strict=True)))
        decoder = self.model.actor.decoder
        x = decoder.tokens(visual[:, None], goal[:, None], prev_action[:, None], holding[:, None], step[:, None])
        return decode_with_past(decoder, self.model.actor.heads["logits"], x, past)


class OnnxDecoderStep(nn.Module):
    """The decoder alone (fused token in, logits out), for latency measurements without perception."""

    def __init__(self, model: ActorCritic) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return decode_with_past(self.model.actor.decoder, self.model.actor.heads["logits"], x, past)


def export_graph(module: nn.Module, example: tuple, path: Path, inputs: list[str], outputs: list[str]) -> Path:
    """TorchScript-based export with dynamic batch and cache lengths; checked by onnx.checker."""
    dynamic = {n: {0: "batch"} for n in inputs + outputs}
    for n in inputs:
        if n.startswith("past_key_values"):
            dynamic[n][2] = "past_len"
    for n in outputs:
        if n.startswith("present"):
            dynamic[n][2] = "present_len"
    with torch.no_grad():
        module(*example)  # fills per-shape caches (frozen position tables), which the trace then sees as constants
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(module, example, path, dynamo=False, input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET)  # fmt: skip
    onnx.checker.check_model(onnx.load(path), full_check=True)
    return path


def io_names(cameras: tuple[str, ...], layers: int) -> tuple[list[str], list[str]]:
    cache = [f"{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    inputs = [f"images.{c}" for c in cameras] + ["goal_tokens", "prev_action", "holding", "step"]
    return inputs + [f"past_key_values.{c}" for c in cache], ["logits"] + [f"present.{c}" for c in cache]


def example_inputs(model: ActorCritic, past_len: int = 0, batch: int = 1) -> tuple[torch.Tensor, ...]:
    config = model.config
    images = [torch.zeros(batch, 3, h, w) for h, w in model.camera_shapes.values()]
    goal = torch.zeros(batch, config.max_goal_tokens, dtype=torch.long)
    scalars = [torch.zeros(batch, dtype=torch.long) for _ in range(3)]
    past = [torch.zeros(batch, config.heads, past_len, config.head_dim) for _ in range(2 * config.layers)]
    return (*images, goal, *scalars, *past)


def export_policy(checkpoint: str | Path, out_dir: str | Path, name: str | None = None) -> Path:
    """Write out_dir/policy.onnx and out_dir/model.json; returns out_dir."""
    model, adapter, payload = load_checkpoint(checkpoint)
    if model.config.goal_encoder != "words":
        raise ValueError("only the word goal encoder exports to ONNX (the T5 option encodes text outside the graph)")
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    step = OnnxStep(model).eval()
    inputs, outputs = io_names(step.cameras, model.config.layers)
    export_graph(step, example_inputs(model, past_len=1), out / POLICY_FILE, inputs, outputs)
    card = ModelCard(
        name=name or out.name,
        action_names=ACTION_NAMES,
        embodiments=("gridhouse",),
        cameras=adapter.cameras,
        goal_tokenizer=adapter.tokenizer.spec(),
        cache=CacheSpec(model.config.layers, model.config.heads, model.config.head_dim, model.config.max_context),
        opset=OPSET,
        provenance=_provenance(Path(checkpoint), payload),
    )
    card.save(out)
    return out


def _provenance(checkpoint: Path, payload: dict) -> Provenance:
    run = checkpoint if checkpoint.is_dir() else checkpoint.parent
    success = {}
    if (run / "eval.json").exists():
        success = {f: r["success"] for f, r in json.loads((run / "eval.json").read_text())["results"].items()}
    tasks = tuple(payload.get("config", {}).get("families", ()))
    argv = list(sys.argv)
    if argv and argv[0].endswith(("flare_training/__main__.py", "flare_training/cli.py")):
        argv = ["python", "-m", "flare_training", *argv[1:]]  # what the user typed, not where Python found it
    command = " ".join(shlex.quote(a) for a in argv) if argv and argv[0] else ""
    return Provenance("gridhouse", tasks, int(payload.get("env_steps", 0)), success, command)

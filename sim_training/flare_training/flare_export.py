"""Export a FLaRe-family checkpoint for the robot: two ONNX graphs and the model card, no torch at run time.

- `goal_encoder.onnx`: T5's encoder and the actor's text adapter, `input_ids` int64 [B, L] ->
  `goal_features` float32 [B, L, 512], run once per goal (the runtime tokenizes with the run's tokenizer.json);
- `policy.onnx`: one step, as the embedded model's graph (docs/design.md, contract 4) except that it takes
  `goal_features` in place of `goal_tokens`: images.nav, images.manip [B, 3, 224, 384] (SPOC's preprocessing),
  goal_features, prev_action, holding, step, the KV-cache -> logits and the new cache. DINOv2, the fusion
  transformer and the decoder are all inside it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from flare_core.actions import ACTION_NAMES
from flare_core.model_card import CacheSpec, GoalEncoderSpec, GoalTokenizerSpec, ModelCard, Provenance
from flare_training.checkpoint import camera_specs
from flare_training.envs import simulator_of
from flare_training.export import (
    OPSET,
    POLICY_FILE,
    _check_layout,
    _provenance,
    decode,
    export_attention,
    export_graph,
    io_names,
    quantize_weights,
)
from flare_training.flare_import import TOKENIZER_FILE, load_flare_checkpoint
from flare_training.flare_model import FRAME, FlareActorCritic

GOAL_ENCODER_FILE = "goal_encoder.onnx"
# FLaRe was trained on the Stretch in AI2-THOR: every Stretch action; the navigation-only and LoCoBot
# embodiments mask the rest at the logits, as FLaRe runs on robots.
EMBODIMENTS = ("stretch_re1", "stretch_nav", "locobot")


class GoalEncoderGraph(nn.Module):
    def __init__(self, model: FlareActorCritic) -> None:
        super().__init__()
        self.encoder = model.visual_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode_goal(input_ids)


class FlareOnnxStep(nn.Module):
    """The actor for one step over explicit past keys and values (the cache layouts of `flare_training.export`)."""

    def __init__(self, model: FlareActorCritic, cache_layout: str = "concat") -> None:
        super().__init__()
        self.model = model
        self.cameras = model.config.cameras
        self.cache_layout = _check_layout(cache_layout)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(self.cameras)
        images, (goal, prev_action, holding, step), past = args[:n], args[n : n + 4], args[n + 4 :]
        features = {c: f[:, None] for c, f in self.model.features(dict(zip(self.cameras, images, strict=True))).items()}
        x = self.model.tokens(features, goal, prev_action[:, None], holding[:, None], step[:, None])
        attention = export_attention(self.cache_layout, past, step, self.model.config)
        return decode(self.model.decoder, self.model.actor, x, attention)


def quantize_dinov2(path: Path) -> Path:
    """int8 weights for DINOv2's matrix products only, where the step's time goes (~85 % of it). Quantizing the
    fusion as well moved the test model's logits by up to 0.30 (DINOv2 alone: 0.04) for 5-10 ms; the patch
    embedding's convolution is faster in float32 than as ONNX Runtime's ConvInteger."""
    return quantize_weights(path, node_prefixes=("/dinov2/",), op_types=("MatMul",))


class _MultiHeadAttention(torch.autograd.Function):
    """Softmax attention over [B, S, heads * head_dim] queries, keys and values, exported as ONNX Runtime's
    fused MultiHeadAttention (com.microsoft) instead of ~10 reshapes, transposes and products per layer."""

    @staticmethod
    def forward(ctx, q, k, v, heads: int):
        def split(t):
            return t.unflatten(-1, (heads, -1)).transpose(1, 2)

        return F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).flatten(2)

    @staticmethod
    def symbolic(g, q, k, v, heads: int):
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=heads)
        out.setType(q.type())  # the exporter cannot infer a contrib op's shapes
        return out


def _fused_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """A transformers attention function (queries etc. [B, heads, S, head_dim] -> [B, S, heads, head_dim]) for
    DINOv2's unmasked self-attention with the default 1/sqrt(head_dim) scale."""
    heads = module.num_attention_heads
    merged = [t.transpose(1, 2).flatten(2) for t in (query, key, value)]
    return _MultiHeadAttention.apply(*merged, heads).unflatten(-1, (heads, -1)), None


@contextlib.contextmanager
def fused_dinov2_attention(backbone: nn.Module):
    """DINOv2's attention through `_fused_attention` while exporting (torch gives the same numbers)."""
    from transformers import AttentionInterface

    AttentionInterface.register("flare_onnx_mha", _fused_attention)
    before = backbone.config._attn_implementation
    backbone.config._attn_implementation = "flare_onnx_mha"
    try:
        yield
    finally:
        backbone.config._attn_implementation = before


def export_step(model: FlareActorCritic, path: Path, cache_layout: str = "concat") -> Path:
    """policy.onnx: one step of the actor, DINOv2's attention as ONNX Runtime's fused MultiHeadAttention."""
    inputs, outputs = io_names(model.config.cameras, model.config.layers, goal="goal_features")
    with fused_dinov2_attention(model.dinov2.backbone):
        return export_graph(FlareOnnxStep(model, cache_layout).eval(), step_example(model, cache_layout), path,
                            inputs, outputs, cache_layout, goal_axis=("goal_features",))  # fmt: skip


def step_example(model: FlareActorCritic, cache_layout: str, goal_tokens: int = 5) -> tuple[torch.Tensor, ...]:
    c = model.config
    past_len = c.max_context if cache_layout == "shared" else 1
    images = [torch.zeros(1, 3, *FRAME) for _ in c.cameras]
    scalars = [torch.zeros(1, dtype=torch.long) for _ in range(3)]
    past = [torch.zeros(1, c.heads, past_len, c.head_dim) for _ in range(2 * c.layers)]
    return (*images, torch.zeros(1, goal_tokens, c.d_model), *scalars, *past)


def export_flare_policy(
    payload: dict,
    checkpoint: Path,
    out_dir: str | Path,
    name: str | None = None,
    cache_layout: str = "concat",
    weights: str = "float32",
    cache_dtype: str = "float32",
) -> Path:
    """Write goal_encoder.onnx, policy.onnx, tokenizer.json and model.json into out_dir; returns out_dir."""
    if cache_dtype != "float32":
        raise ValueError("an int8 cache needs calibration episodes, which the FLaRe family has not got here yet")
    model = load_flare_checkpoint(payload).eval()  # goals longer than the card's max_tokens are refused
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / TOKENIZER_FILE).write_text(payload["tokenizer"]["json"])
    goal = GoalEncoderGraph(model).eval()
    export_graph(goal, (torch.ones(1, 5, dtype=torch.long),), out / GOAL_ENCODER_FILE, ["input_ids"], ["goal_features"],
                 goal_axis=("input_ids", "goal_features"))  # fmt: skip
    export_step(model, out / POLICY_FILE, cache_layout)
    if weights == "int8":
        quantize_dinov2(out / POLICY_FILE)
    c = model.config
    card = ModelCard(
        name=name or out.name,
        action_names=ACTION_NAMES,
        embodiments=EMBODIMENTS,
        cameras=camera_specs(payload),
        goal_tokenizer=GoalTokenizerSpec("tokenizers", (), payload["tokenizer"]["max_tokens"], TOKENIZER_FILE),
        cache=CacheSpec(c.layers, c.heads, c.head_dim, c.max_context, cache_layout, cache_dtype),
        opset=OPSET,
        provenance=_flare_provenance(checkpoint, payload),
        weights=weights,
        goal_encoder=GoalEncoderSpec(GOAL_ENCODER_FILE, c.d_model),
    )
    card.save(out)
    return out


def _flare_provenance(checkpoint: Path, payload: dict) -> Provenance:
    base = _provenance(checkpoint, payload, simulator_of(payload.get("config", {})))
    source = payload.get("source", {})
    imported = str(payload.get("kind", "")).startswith("flare")  # as FLaRe's authors trained it, in AI2-THOR
    env = "ai2thor" if imported else base.env
    tasks = ("chores",) if imported else base.tasks
    command = base.command or f"imported from {source.get('path', checkpoint)} ({source.get('format', '?')})"
    return Provenance(env, tasks, base.env_steps, base.success, command, base.lineage)

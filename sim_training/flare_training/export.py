"""Export a checkpoint's actor as a one-step ONNX graph with its KV-cache as explicit inputs and outputs, plus
the model card that every loader validates.

Graph (docs/design.md, contract 4), batch dimension dynamic:
  inputs   images.<camera> float32 [B, 3, H, W] (preprocessed by flare_core.preprocess with the card's config),
           goal_tokens int64 [B, K], prev_action int64 [B], holding int64 [B], step int64 [B],
           past_key_values.<i>.key|value float32 [B, heads, past_len, head_dim] (past_len 0 at an episode start)
  outputs  logits float32 [B, 20], present.<i>.key|value float32 [B, heads, past_len + 1, head_dim]
With cache layout "shared" the cache tensors are fixed [B, heads, max_context, head_dim] buffers, present
aliasing past (the runtime binds both to one buffer), and `step` is also the number of filled entries.
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
import torch.nn.functional as F
from torch import nn

from flare_core.actions import ACTION_NAMES
from flare_core.model_card import CACHE_DTYPES, CACHE_LAYOUTS, WEIGHT_TYPES, CacheSpec, ModelCard, Provenance, Stage
from flare_training.checkpoint import load_checkpoint, read_checkpoint
from flare_training.envs import Simulator, simulator_of
from flare_training.model import ActorCritic, merge_heads

OPSET = 17
POLICY_FILE = "policy.onnx"


class ConcatPastAttention:
    """The "concat" cache layout: each layer's past keys/values come in as graph inputs [B, heads, past, head_dim]
    and leave, with the new step appended, as `presents` (Hugging Face's convention)."""

    def __init__(self, past, head_dim: int) -> None:
        self.past, self.scale, self.presents = past, 1.0 / math.sqrt(head_dim), []  # a constant of the graph

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        keys = torch.cat([self.past[2 * layer], k], dim=2)
        values = torch.cat([self.past[2 * layer + 1], v], dim=2)
        self.presents += [keys, values]
        weights = torch.softmax((q @ keys.transpose(-1, -2)) * self.scale, dim=-1)
        return merge_heads(weights @ values)


class _InPlaceAttention(torch.autograd.Function):
    """One new step attending over a fixed-size cache buffer that it writes into at row `filled`.

    Exported as ONNX Runtime's GroupQueryAttention (com.microsoft), which reads and writes the buffer in place
    when present and past are bound to the same memory; the torch forward computes the same thing for tracing.
    With `scales` (key scale, value scale) the buffers are int8, quantized per tensor with those scales.
    """

    @staticmethod
    def forward(ctx, q, k, v, past_k, past_v, filled, heads: int, scales):  # q, k, v [B, 1, heads * d]
        batch, size, d = q.shape[0], past_k.shape[2], past_k.shape[3]
        rows, slot = torch.arange(batch), filled.long()
        present_k, present_v = past_k.clone(), past_v.clone()
        if scales is None:
            present_k[rows, :, slot] = k.reshape(batch, heads, d)
            present_v[rows, :, slot] = v.reshape(batch, heads, d)
            keys, values = present_k, present_v
        else:
            for buffer, new, scale in ((present_k, k, scales[0]), (present_v, v, scales[1])):
                buffer[rows, :, slot] = (new.reshape(batch, heads, d) / scale).round().clamp(-127, 127).to(torch.int8)
            keys, values = present_k.float() * scales[0], present_v.float() * scales[1]
        mask = (torch.arange(size)[None] <= slot[:, None])[:, None, None]  # [B, 1, 1, size]
        y = F.scaled_dot_product_attention(q.reshape(batch, 1, heads, d).transpose(1, 2), keys, values, mask)
        return y.transpose(1, 2).reshape(batch, 1, heads * d), present_k, present_v

    @staticmethod
    def symbolic(g, q, k, v, past_k, past_v, filled, heads: int, scales):
        one = g.op("Constant", value_t=torch.tensor(1, dtype=torch.int32))
        total = g.op("Add", g.op("ReduceMax", filled, keepdims_i=0), one)
        inputs, quantized = [q, k, v, past_k, past_v, filled, total], {}
        if scales is not None:
            absent = g.op("prim::Constant")  # cos/sin caches, position ids, attention bias, head sink: not used
            absent.setType(torch._C.OptionalType.ofTensor())
            scale = [g.op("Constant", value_t=torch.tensor([s], dtype=torch.float32)) for s in scales]
            inputs += [absent] * 5 + scale
            quantized = {"kv_cache_bit_width_i": 8, "k_quant_type_s": "PER_TENSOR", "v_quant_type_s": "PER_TENSOR"}
        outputs = g.op("com.microsoft::GroupQueryAttention", *inputs, num_heads_i=heads, kv_num_heads_i=heads,
                       outputs=3, **quantized)  # fmt: skip
        for value, like in zip(outputs, (q, past_k, past_v), strict=True):
            value.setType(like.type())  # the exporter cannot infer a contrib op's shapes
        return outputs


class InPlaceAttention:
    """The "shared" cache layout: fixed [B, heads, max_context, head_dim] buffers, the new step written at row
    `filled` [B] (ONNX Runtime's GroupQueryAttention); `scales`, one (key, value) pair per layer, for int8
    buffers."""

    def __init__(self, past, filled: torch.Tensor, heads: int, scales: list | None = None) -> None:
        self.past, self.filled, self.heads, self.scales, self.presents = past, filled, heads, scales, []

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        heads = self.heads  # a Python int: the graph's attribute, not a traced shape
        scales = None if self.scales is None else tuple(self.scales[layer])
        q, k, v = (merge_heads(t) for t in (q, k, v))  # GroupQueryAttention takes [B, 1, heads * head_dim]
        y, key, value = _InPlaceAttention.apply(q, k, v, self.past[2 * layer], self.past[2 * layer + 1],
                                                self.filled, heads, scales)  # fmt: skip
        self.presents += [key, value]
        return y


def export_attention(cache_layout: str, past, step: torch.Tensor | None, config, scales: list | None = None):
    """The attention strategy of a cache layout for a model of `config` (heads, head_dim: Python ints, graph
    constants); the step index doubles as the filled count ("shared")."""
    if cache_layout == "shared":
        return InPlaceAttention(past, step.to(torch.int32), config.heads, scales)
    return ConcatPastAttention(past, config.head_dim)


def decode(decoder, head: nn.Module, x: torch.Tensor, attention) -> tuple[torch.Tensor, ...]:
    """One fused token [B, 1, D] through the decoder with an export attention strategy; -> logits, presents."""
    return (head(decoder(x, attention))[:, 0], *attention.presents)


def cache_scales(model: ActorCritic, adapter, episodes: int = 20, seed: int = 0) -> list[tuple[float, float]]:
    """Per layer, the (key, value) int8 scales that cover every key and value the policy computes over
    expert-driven episodes on training houses (max |x| / 127): calibration for an int8 cache."""
    from flare_sim import TRAIN_FAMILIES, GridhouseEnv

    env = GridhouseEnv(families=TRAIN_FAMILIES, split="train", expert=True)
    peaks = torch.zeros(model.config.layers, 2)
    model.eval()
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        cache, _ = model.new_caches(1)
        done = False
        while not done and int(cache.length[0]) < model.config.max_context:
            batch = {key: [value] for key, value in obs.items()}
            with torch.no_grad():
                inputs = adapter.step_inputs(batch)
                inputs["visual"] = model.visual(adapter.frames(batch))
                model.actor.step(inputs, cache)
            obs, _, terminated, truncated, info = env.step(info["expert_action"])
            done = terminated or truncated
        n = int(cache.length[0])
        for layer in range(model.config.layers):
            peaks[layer, 0] = max(peaks[layer, 0], cache.keys[layer][:, :, :n].abs().max())
            peaks[layer, 1] = max(peaks[layer, 1], cache.values[layer][:, :, :n].abs().max())
    return [(float(k) / 127, float(v) / 127) for k, v in peaks.clamp(min=1e-6)]


class OnnxStep(nn.Module):
    """The actor for one step, attending over an explicit past instead of the training-time KVCache."""

    def __init__(self, model: ActorCritic, cache_layout: str = "concat", cache_scales: list | None = None) -> None:
        super().__init__()
        self.model = model
        self.cameras = model.visual.cameras
        self.cache_layout = _check_layout(cache_layout)
        self.cache_scales = cache_scales

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(self.cameras)
        images, (goal, prev_action, holding, step), past = args[:n], args[n : n + 4], args[n + 4 :]
        visual = self.model.visual(dict(zip(self.cameras, images, strict=True)))
        actor = self.model.actor
        x = actor.tokens(visual[:, None], goal[:, None], prev_action[:, None], holding[:, None], step[:, None])
        attention = export_attention(self.cache_layout, past, step, self.model.config, self.cache_scales)
        return decode(actor.decoder, actor.heads["logits"], x, attention)


class OnnxDecoderStep(nn.Module):
    """A decoder and its action head alone (fused token and, for the shared layout, the filled count in; logits
    out), for latency measurements without perception; either model family's."""

    def __init__(self, decoder, head: nn.Module, config, cache_layout: str = "concat", scales: list | None = None):
        super().__init__()
        self.decoder, self.head, self.config = decoder, head, config
        self.cache_layout = _check_layout(cache_layout)
        self.cache_scales = scales

    def forward(self, x: torch.Tensor, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x [B, 1, d_model], then (shared layout only) step [B], then the past."""
        step, past = (args[0], args[1:]) if self.cache_layout == "shared" else (None, args)
        attention = export_attention(self.cache_layout, past, step, self.config, self.cache_scales)
        return decode(self.decoder, self.head, x, attention)


def _check_layout(layout: str) -> str:
    if layout not in CACHE_LAYOUTS:
        raise ValueError(f"unknown cache layout {layout!r}; use one of {', '.join(CACHE_LAYOUTS)}")
    return layout


def export_graph(
    module: nn.Module,
    example: tuple,
    path: Path,
    inputs: list[str],
    outputs: list[str],
    cache_layout: str = "concat",
    goal_axis: tuple[str, ...] = (),
) -> Path:
    """TorchScript-based export with a dynamic batch (and cache length, "concat" layout; and the token axis of
    the `goal_axis` tensors, whose length is the goal's); checked by onnx.checker."""
    dynamic = {n: {0: "batch", 1: "goal_len"} if n in goal_axis else {0: "batch"} for n in inputs + outputs}
    if cache_layout == "concat":
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
                          dynamic_axes=dynamic, opset_version=OPSET, custom_opsets={"com.microsoft": 1})  # fmt: skip
    onnx.checker.check_model(onnx.load(path), full_check=True)
    return path


def quantize_weights(path: Path, node_prefixes: tuple[str, ...] = (), op_types: tuple[str, ...] = ()) -> Path:
    """int8 weights, activations quantized on the fly (ONNX Runtime dynamic quantization, per channel): about a
    quarter of the bytes to stream per step, which is what a batch-1 decoder step on a CPU waits for.

    Weights use 7 bits (reduce_range): on x86 CPUs without VNNI (AVX2 only, as many robot computers) ONNX
    Runtime multiplies uint8 x int8 with an instruction whose 16-bit sums saturate; with full-range weights the
    demo model then chose another action on 10 of 56 steps (logits off by 0.64), with 7 bits on 2 (0.022).
    The model must be portable to whatever CPU the robot has, so the safe range is the only one.
    `node_prefixes`: quantize only the nodes whose names start with one of them, `op_types` only these
    operators (the rest stays float32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = None
    if node_prefixes:
        nodes = [n.name for n in onnx.load(path).graph.node if n.name.startswith(node_prefixes)]
        if not nodes:  # ONNX Runtime reads an empty list as "quantize everything"
            raise ValueError(f"{path}: no node named {' or '.join(node_prefixes)}*; nothing to quantize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(path, path, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         nodes_to_quantize=nodes, op_types_to_quantize=list(op_types) or None)  # fmt: skip
    return path


def io_names(cameras: tuple[str, ...], layers: int, goal: str = "goal_tokens") -> tuple[list[str], list[str]]:
    """The step graph's input and output names; `goal` is "goal_features" for FLaRe's family (encoded goals)."""
    cache = [f"{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    inputs = [f"images.{c}" for c in cameras] + [goal, "prev_action", "holding", "step"]
    return inputs + [f"past_key_values.{c}" for c in cache], ["logits"] + [f"present.{c}" for c in cache]


def example_inputs(
    model: ActorCritic, past_len: int = 0, batch: int = 1, cache_layout: str = "concat", cache_dtype: str = "float32"
) -> tuple[torch.Tensor, ...]:
    """Zeros shaped like the graph's inputs; the "shared" layout's cache is always max_context long."""
    config = model.config
    if cache_layout == "shared":
        past_len = config.max_context
    images = [torch.zeros(batch, 3, h, w) for h, w in model.camera_shapes.values()]
    goal = torch.zeros(batch, config.max_goal_tokens, dtype=torch.long)
    scalars = [torch.zeros(batch, dtype=torch.long) for _ in range(3)]
    shape, dtype = (batch, config.heads, past_len, config.head_dim), getattr(torch, cache_dtype)
    past = [torch.zeros(shape, dtype=dtype) for _ in range(2 * config.layers)]
    return (*images, goal, *scalars, *past)


def export_policy(
    checkpoint: str | Path,
    out_dir: str | Path,
    name: str | None = None,
    cache_layout: str = "concat",
    weights: str = "float32",
    cache_dtype: str = "float32",
) -> Path:
    """Write out_dir/policy.onnx and out_dir/model.json; returns out_dir.

    cache_layout "shared" writes the cache in place (see CacheSpec); weights "int8" quantizes them after export;
    cache_dtype "int8" (shared layout only) keeps keys and values in int8 with scales calibrated on episodes.
    """
    _check_layout(cache_layout)
    if weights not in WEIGHT_TYPES:
        raise ValueError(f"unknown weight type {weights!r}; use one of {', '.join(WEIGHT_TYPES)}")
    if cache_dtype not in CACHE_DTYPES or (cache_dtype != "float32" and cache_layout != "shared"):
        raise ValueError(f"cache dtype {cache_dtype!r}: use one of {', '.join(CACHE_DTYPES)}; int8 needs layout shared")
    path, payload = read_checkpoint(checkpoint)
    if payload.get("family") == "flare":
        from flare_training.flare_export import export_flare_policy

        return export_flare_policy(payload, path, out_dir, name, cache_layout, weights, cache_dtype)
    model, adapter, payload = load_checkpoint(path)
    if model.config.goal_encoder != "words":
        raise ValueError("only the word goal encoder exports to ONNX (the T5 option encodes text outside the graph)")
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sim = simulator_of(payload.get("config", {}))
    if cache_dtype == "int8" and sim.thor is not None:
        raise ValueError("--cache-dtype int8 calibrates on gridhouse episodes: export AI2-THOR runs in float32")
    scales = cache_scales(model, adapter) if cache_dtype == "int8" else None
    step = OnnxStep(model, cache_layout, scales).eval()
    inputs, outputs = io_names(step.cameras, model.config.layers)
    example = example_inputs(model, past_len=1, cache_layout=cache_layout, cache_dtype=cache_dtype)
    export_graph(step, example, out / POLICY_FILE, inputs, outputs, cache_layout)
    if weights == "int8":
        quantize_weights(out / POLICY_FILE)
    c = model.config
    card = ModelCard(
        name=name or out.name,
        action_names=ACTION_NAMES,
        embodiments=(sim.embodiment.name,),
        cameras=adapter.cameras,
        goal_tokenizer=adapter.tokenizer.spec(),
        cache=CacheSpec(c.layers, c.heads, c.head_dim, c.max_context, cache_layout, cache_dtype),
        opset=OPSET,
        provenance=_provenance(Path(checkpoint), payload, sim),
        weights=weights,
    )
    card.save(out)
    return out


def _provenance(checkpoint: Path, payload: dict, sim: Simulator) -> Provenance:
    run = checkpoint if checkpoint.is_dir() else checkpoint.parent
    success = {}
    if (run / "eval.json").exists():
        success = {f: r["success"] for f, r in json.loads((run / "eval.json").read_text())["results"].items()}
    tasks = tuple(payload.get("config", {}).get("families", ()) or sim.train_families)
    argv = list(sys.argv)
    if argv and argv[0].endswith(("flare_training/__main__.py", "flare_training/cli.py")):
        argv = ["python", "-m", "flare_training", *argv[1:]]  # what the user typed, not where Python found it
    command = " ".join(shlex.quote(a) for a in argv) if argv and argv[0] else ""
    env = "ai2thor" if sim.thor else "gridhouse"
    return Provenance(env, tasks, int(payload.get("env_steps", 0)), success, command, lineage(payload))


def lineage(payload: dict) -> tuple[Stage, ...]:
    """The runs a checkpoint was trained from, oldest first, read from each run's recorded settings (`--init`,
    or `--visual-from` for a frozen encoder) as far as they are still on disk; a run gone is named as missing."""
    stages, seen = [], set()
    parent = _parent(payload)
    while parent and parent not in seen:
        seen.add(parent)
        try:
            _, ancestor = read_checkpoint(parent)
        except FileNotFoundError:
            stages.append(Stage(parent, "missing"))
            break
        config = ancestor.get("config") or {}
        stages.append(Stage(parent, str(ancestor.get("kind") or "unknown"), int(ancestor.get("env_steps") or 0),
                            tuple(config.get("families") or ()), int(config.get("demos") or 0)))  # fmt: skip
        parent = _parent(ancestor)
    return tuple(reversed(stages))


def _parent(payload: dict) -> str:
    config = payload.get("config") or {}
    return config.get("init") or config.get("visual_from") or ""

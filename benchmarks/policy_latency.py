"""Per-step policy latency: ONNX Runtime with KV-cache vs torch with KV-cache vs torch recomputing the whole
history each step (as SPOC does), in one run.

Two architectures, random weights (latency does not depend on training):
- demo: the embedded-simulator policy (ModelConfig defaults, context stretched to 512 so t = 500 exists);
- flare: FLaRe's own model family (flare_training.flare_model) at the released checkpoints' size: DINOv2-S/14
  on two 224 x 384 cameras, the 3-layer fusion over 84 + 84 image tokens and the goal's T5 tokens, the
  3 x 512 x 8 LLaMA decoder; T5-small encodes the goal once per episode.
"decoder" times a decoder alone (one fused token in, logits out) at t = 1, 100, 500 in four ONNX Runtime
variants: the default export (`ort_cache`: concat cache, float32), the in-place cache (`ort_shared`: fixed
buffers written by GroupQueryAttention, no per-step copy of the past), in-place with int8 weights
(`ort_shared_int8`) and with int8 weights and an int8 cache (`ort_shared_int8_kv8`, which the summary's
decoder_* figures report).
"step" times the whole policy step: for demo, ONNX Runtime and torch at t = 1, 100, 500; for FLaRe
(`flare_step_*`), the exported policy.onnx at t = 100 in float32 and with int8 weights (DINOv2's, as
`export --weights int8` writes it) against torch eager (DINOv2, fusion and the cached decoder step), and the
goal encoder (`flare_goal_encode_*`: goal_encoder.onnx vs torch). The int8 graph's decisions are compared with
float32's on the same inputs (logit difference, same greedy action).
Figures are medians over repeated calls, and the calls compared are timed in turn (each decoder variant at
t = 1, 100, 500 call by call; ONNX Runtime and torch alternately for the whole step), so the drift of a
shared, noisy machine hits them alike and the ratios hold.

    .venv/bin/python benchmarks/policy_latency.py [--repeats 30] [--skip-flare-step]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from flare_training.export import (
    OnnxDecoderStep,
    OnnxStep,
    example_inputs,
    export_graph,
    io_names,
    quantize_weights,
)
from flare_training.flare_export import GoalEncoderGraph, export_step, quantize_dinov2
from flare_training.flare_model import FlareActorCritic, FlareConfig
from flare_training.model import ActorCritic, CachedStepAttention, KVCache, ModelConfig, SequenceAttention

STEPS = (1, 100, 500)


def interleaved_median_ms(repeats: int, calls: dict[str, tuple]) -> dict[str, float]:
    """Median ms of each call, timed in turn (a, b, c, a, b, c, ...): on a shared machine whose speed drifts by
    tens of percent within a minute, all see the same drift, so ratios between them (ONNX Runtime over torch,
    t = 500 over t = 1) hold."""
    for fn, *args in calls.values():
        fn(*args)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (fn, *args) in calls.items():
            start = time.perf_counter()
            fn(*args)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def torch_decoder_cached(decoder, token: torch.Tensor, cache: KVCache, past_len: int) -> None:
    cache.length.fill_(past_len)  # the same past every call: time one step at that length
    decoder(token, CachedStepAttention(cache))


def torch_decoder_recompute(decoder, history: torch.Tensor, episode: torch.Tensor) -> None:
    decoder(history, SequenceAttention(episode))  # the whole history again, as SPOC does each step


def torch_step_cached(model: ActorCritic, images: dict, inputs: dict, cache: KVCache, past_len: int) -> None:
    cache.length.fill_(past_len)
    model.actor.step({"visual": model.visual(images), **inputs}, cache)


def ort_session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# ONNX Runtime decoder variants: (cache layout, weights, cache dtype). "shared" writes the cache in place.
ORT_VARIANTS = {
    "ort_cache": ("concat", "float32", "float32"),
    "ort_shared": ("shared", "float32", "float32"),
    "ort_shared_int8": ("shared", "int8", "float32"),
    "ort_shared_int8_kv8": ("shared", "int8", "int8"),
}
HEADLINE = "ort_shared_int8_kv8"  # what the summary's decoder_* figures report: the fastest CPU variant
KV8_SCALE = 4 / 127  # int8 cache scale for the benchmark's N(0, 1) keys and values (calibrated per model on export)


def export_decoder(decoder, head, config, path: Path, layout: str, weights: str, cache_dtype: str) -> Path:
    cache_names = [f"{i}.{k}" for i in range(config.layers) for k in ("key", "value")]
    length = config.max_context if layout == "shared" else 1
    past = [torch.zeros(1, config.heads, length, config.head_dim, dtype=getattr(torch, cache_dtype))]
    past *= 2 * config.layers
    step = [torch.zeros(1, dtype=torch.long)] if layout == "shared" else []
    scales = [(KV8_SCALE, KV8_SCALE)] * config.layers if cache_dtype == "int8" else None
    path = export_graph(
        OnnxDecoderStep(decoder, head, config, layout, scales).eval(),
        (torch.zeros(1, 1, config.d_model), *step, *past),
        path,
        ["token"] + (["step"] if step else []) + [f"past_key_values.{n}" for n in cache_names],
        ["logits"] + [f"present.{n}" for n in cache_names],
        layout,
    )
    return quantize_weights(path) if weights == "int8" else path


class InPlaceStep:
    """One step as OnnxPolicy runs the "shared" layout: cache buffers bound once as input and output (the same
    memory), only the step's own inputs bound per call."""

    def __init__(self, session: ort.InferenceSession, buffers: dict[str, np.ndarray], actions: int = 20) -> None:
        self.session, self.binding = session, session.io_binding()
        self.buffers = buffers  # bound by address: they must live as long as the binding
        self.logits = np.zeros((1, actions), dtype=np.float32)
        for name, buffer in buffers.items():
            shape, dtype = list(buffer.shape), buffer.dtype.type
            self.binding.bind_input(f"past_key_values.{name}", "cpu", 0, dtype, shape, buffer.ctypes.data)
            self.binding.bind_output(f"present.{name}", "cpu", 0, dtype, shape, buffer.ctypes.data)
        self.binding.bind_output("logits", "cpu", 0, np.float32, list(self.logits.shape), self.logits.ctypes.data)

    def __call__(self, feed: dict[str, np.ndarray]) -> None:
        for name, value in feed.items():
            self.binding.bind_cpu_input(name, value)
        self.session.run_with_iobinding(self.binding)


def decoder_latencies(decoder, head, config, tmp: Path, repeats: int, variants=ORT_VARIANTS) -> dict[str, float]:
    """A decoder (and its action head) of either family: ONNX Runtime variants and torch, t = 1, 100, 500."""
    cache_names = [f"{i}.{k}" for i in range(config.layers) for k in ("key", "value")]
    sessions = {
        kind: ort_session(export_decoder(decoder, head, config, tmp / f"decoder_{kind}.onnx", *variants[kind]))
        for kind in variants
    }
    rng = np.random.default_rng(0)
    # Per variant, its calls at t = 1, 100, 500, timed in turn (so its growth ratio sees no drift); variants one
    # after another (ONNX Runtime's threads spin after a call and would slow whatever ran next); torch's two
    # variants together.
    groups: dict[str, dict[str, tuple]] = defaultdict(dict)
    for t in STEPS:
        past_len = t - 1
        token = rng.standard_normal((1, 1, config.d_model), dtype=np.float32)
        past = {
            n: rng.standard_normal((1, config.heads, past_len, config.head_dim), dtype=np.float32) for n in cache_names
        }
        for kind, session in sessions.items():
            if variants[kind][0] == "concat":
                feed = {"token": token, **{f"past_key_values.{n}": p for n, p in past.items()}}
                groups[kind][f"{kind}_ms_t{t}"] = (session.run, None, feed)
            else:  # the same past, in fixed buffers; each call rewrites entry t - 1
                shape = (1, config.heads, config.max_context, config.head_dim)
                int8 = variants[kind][2] == "int8"
                buffers = {n: np.zeros(shape, dtype=np.int8 if int8 else np.float32) for n in cache_names}
                for n, p in past.items():
                    buffers[n][:, :, :past_len] = np.clip(np.round(p / KV8_SCALE), -127, 127) if int8 else p
                feed = {"token": token, "step": np.array([past_len], dtype=np.int64)}
                groups[kind][f"{kind}_ms_t{t}"] = (InPlaceStep(session, buffers), feed)
        groups["torch"][f"torch_cache_ms_t{t}"] = (
            torch_decoder_cached,
            decoder,
            torch.from_numpy(token),
            KVCache(config, 1),
            past_len,
        )
        history, episode = torch.randn(1, t, config.d_model), torch.zeros(1, t, dtype=torch.long)
        groups["torch"][f"torch_recompute_ms_t{t}"] = (torch_decoder_recompute, decoder, history, episode)
    out = {}
    with torch.inference_mode():
        for calls in groups.values():
            out.update(interleaved_median_ms(repeats, calls))
    return out


def step_latencies(model: ActorCritic, tmp: Path, repeats: int, steps=STEPS) -> dict[str, float]:
    """Whole step: ONNX Runtime (explicit cache) vs torch eager (KVCache), at each t."""
    config = model.config
    step = OnnxStep(model).eval()
    inputs, outputs = io_names(step.cameras, config.layers)
    session = ort_session(export_graph(step, example_inputs(model, past_len=1), tmp / "step.onnx", inputs, outputs))
    out = {}
    for t in steps:
        example = example_inputs(model, past_len=t - 1)
        feed = {
            name: (torch.randn_like(v) if v.is_floating_point() else v).numpy()
            for name, v in zip(inputs, example, strict=True)
        }
        images = {c: torch.from_numpy(feed[f"images.{c}"]) for c in step.cameras}
        names = {"goal": "goal_tokens", "prev_action": "prev_action", "holding": "holding"}
        step_inputs = {k: torch.from_numpy(feed[v]) for k, v in names.items()}
        with torch.inference_mode():
            args = (model, images, step_inputs, KVCache(config, 1), t - 1)
            pair = interleaved_median_ms(
                repeats, {"ort": (session.run, None, feed), "torch": (torch_step_cached, *args)}
            )
        out[f"ort_ms_t{t}"], out[f"torch_ms_t{t}"] = pair["ort"], pair["torch"]
    return out


def flare_model() -> FlareActorCritic:
    """FLaRe's model at the released checkpoints' size, DINOv2-S/14 and T5-small from their configs (random
    weights: latency does not depend on them)."""
    from transformers import Dinov2Config, Dinov2Model, T5Config, T5EncoderModel

    dinov2 = Dinov2Model(Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14,
                                      image_size=518))  # fmt: skip
    t5 = T5EncoderModel(T5Config(d_model=512, d_kv=64, num_heads=8, d_ff=2048, num_layers=6, vocab_size=32128,
                                 feed_forward_proj="relu"))  # fmt: skip
    return FlareActorCritic(FlareConfig(), dinov2, t5).eval()


def torch_flare_step(model: FlareActorCritic, images: dict, goal, prev, holding, cache: KVCache, past_len: int):
    cache.length.fill_(past_len)
    model.actor(model.step(model.features(images), goal, prev, holding, cache))


def flare_step_latencies(model: FlareActorCritic, tmp: Path, repeats: int, t: int = 100) -> dict[str, float]:
    """FLaRe's exported graphs (float32 and int8 weights) vs torch eager, at step t, and the goal encoder."""
    config = model.config
    inputs, _ = io_names(config.cameras, config.layers, goal="goal_features")
    fp32 = export_step(model, tmp / "flare_step.onnx")  # as `export` writes policy.onnx
    int8 = tmp / "flare_step_int8.onnx"
    int8.write_bytes(fp32.read_bytes())
    quantize_dinov2(int8)  # what `export --weights int8` writes for the FLaRe family
    goal_graph = export_graph(GoalEncoderGraph(model).eval(), (torch.ones(1, 5, dtype=torch.long),),
                              tmp / "flare_goal.onnx", ["input_ids"], ["goal_features"],
                              goal_axis=("input_ids", "goal_features"))  # fmt: skip
    sessions = {name: ort_session(path) for name, path in (("fp32", fp32), ("int8", int8), ("goal", goal_graph))}
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 32000, (1, 8)).astype(np.int64)  # a goal of 8 tokens
    with torch.inference_mode():
        goal = model.visual_encoder.encode_goal(torch.from_numpy(ids))

    def feed() -> dict[str, np.ndarray]:
        past = rng.standard_normal((2 * config.layers, 1, config.heads, t - 1, config.head_dim), dtype=np.float32)
        images = {f"images.{c}": rng.standard_normal((1, 3, 224, 384), dtype=np.float32) for c in config.cameras}
        scalars = {"prev_action": np.array([3]), "holding": np.array([0]), "step": np.array([t - 1])}
        return {**images, "goal_features": goal.numpy(), **scalars,
                **{name: past[i] for i, name in enumerate(inputs[len(images) + 4 :])}}  # fmt: skip

    # int8 decisions against float32's on the same inputs (random frames and past: a numerical check only)
    diffs, same = [], 0
    for _ in range(10):
        f = feed()
        a, b = sessions["fp32"].run(["logits"], f)[0], sessions["int8"].run(["logits"], f)[0]
        diffs.append(float(np.abs(a - b).max()))
        same += int(a.argmax() == b.argmax())
    f = feed()
    images = {c: torch.from_numpy(f[f"images.{c}"]) for c in config.cameras}
    cache = KVCache(config, 1)
    with torch.inference_mode():
        calls = {
            "ort": (sessions["fp32"].run, None, f),
            "ort_int8": (sessions["int8"].run, None, f),
            "torch": (torch_flare_step, model, images, goal, torch.tensor([3]), torch.tensor([0]), cache, t - 1),
        }
        step = interleaved_median_ms(repeats, calls)
        goal_calls = {
            "ort": (sessions["goal"].run, None, {"input_ids": ids}),
            "torch": (model.visual_encoder.encode_goal, torch.from_numpy(ids)),
        }
        goal_ms = interleaved_median_ms(repeats * 3, goal_calls)
    return {
        f"flare_step_ms_t{t}": step["ort"],
        f"flare_step_int8_ms_t{t}": step["ort_int8"],
        f"flare_step_torch_ms_t{t}": step["torch"],
        "flare_goal_encode_ms": goal_ms["ort"],
        "flare_goal_encode_torch_ms": goal_ms["torch"],
        "flare_step_int8_max_logit_diff": max(diffs),
        "flare_step_int8_same_action": same / len(diffs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per figure (median reported)")
    parser.add_argument("--skip-flare-step", action="store_true", help="skip the DINOv2 whole-step comparison")
    args = parser.parse_args()
    torch.manual_seed(0)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        from flare_training.inputs import gridhouse_cameras

        shapes = {c.name: (c.preprocessing.height, c.preprocessing.width) for c in gridhouse_cameras()}
        demo = ActorCritic(ModelConfig(max_context=512, vocab_size=64), shapes).eval()
        actor = demo.actor
        for k, v in decoder_latencies(actor.decoder, actor.heads["logits"], demo.config, tmp, args.repeats).items():
            figures[f"demo_decoder_{k}"] = v
        for k, v in step_latencies(demo, tmp, args.repeats).items():
            figures[f"demo_step_{k}"] = v
        flare = flare_model()
        for k, v in decoder_latencies(flare.decoder, flare.actor, flare.config, tmp, args.repeats).items():
            figures[f"decoder_{k}"] = v
        if not args.skip_flare_step:
            figures.update(flare_step_latencies(flare, tmp, max(9, args.repeats // 3)))

    print(f"{'ms per step':<34}" + "".join(f"{'t=' + str(t):>10}" for t in STEPS))
    for prefix, label in (("demo_decoder", "demo decoder"), ("decoder", "FLaRe decoder")):
        for kind in (*ORT_VARIANTS, "torch_cache", "torch_recompute"):
            row = [figures.get(f"{prefix}_{kind}_ms_t{t}") for t in STEPS]
            print(f"{label + ' ' + kind:<34}" + "".join(f"{v:>10.3f}" if v is not None else f"{'-':>10}" for v in row))
    for kind in ("ort", "torch"):
        row = [figures.get(f"demo_step_{kind}_ms_t{t}") for t in STEPS]
        print(f"{'demo whole step ' + kind:<34}" + "".join(f"{v:>10.3f}" for v in row))
    for kind, label in (("", "ort float32"), ("_int8", "ort int8 weights"), ("_torch", "torch eager")):
        value = figures.get(f"flare_step{kind}_ms_t100")
        print(f"{'FLaRe whole step ' + label:<34}{'-':>10}" + (f"{value:>10.3f}" if value else f"{'-':>10}"))

    best = f"decoder_{HEADLINE}_ms"
    print(f"decoder_* figures below: ONNX Runtime variant {HEADLINE} ({' + '.join(ORT_VARIANTS[HEADLINE])})")
    summary = {
        "decoder_ort_cache_ms_t500": figures[f"{best}_t500"],
        "decoder_speedup_vs_recompute_t500": figures["decoder_torch_recompute_ms_t500"] / figures[f"{best}_t500"],
        "decoder_growth_t500_over_t1": figures[f"{best}_t500"] / figures[f"{best}_t1"],
        "decoder_concat_fp32_ms_t500": figures["decoder_ort_cache_ms_t500"],
        "decoder_concat_fp32_growth_t500_over_t1": figures["decoder_ort_cache_ms_t500"]
        / figures["decoder_ort_cache_ms_t1"],
        "decoder_shared_fp32_ms_t500": figures["decoder_ort_shared_ms_t500"],
        "decoder_shared_fp32_growth_t500_over_t1": figures["decoder_ort_shared_ms_t500"]
        / figures["decoder_ort_shared_ms_t1"],
        "decoder_shared_int8_ms_t500": figures["decoder_ort_shared_int8_ms_t500"],
        "decoder_shared_int8_growth_t500_over_t1": figures["decoder_ort_shared_int8_ms_t500"]
        / figures["decoder_ort_shared_int8_ms_t1"],
        "demo_decoder_ort_cache_ms_t500": figures["demo_decoder_ort_cache_ms_t500"],
        "demo_step_ort_over_torch": figures["demo_step_ort_ms_t500"] / figures["demo_step_torch_ms_t500"],
    }
    if "flare_step_ms_t100" in figures:
        torch_ms = figures["flare_step_torch_ms_t100"]
        summary |= {
            "flare_goal_encode_ms": figures["flare_goal_encode_ms"],
            "flare_goal_encode_torch_ms": figures["flare_goal_encode_torch_ms"],
            "flare_goal_encode_ort_over_torch": figures["flare_goal_encode_ms"] / figures["flare_goal_encode_torch_ms"],
            "flare_step_ms": figures["flare_step_ms_t100"],
            "flare_step_int8_ms": figures["flare_step_int8_ms_t100"],
            "flare_step_torch_ms": torch_ms,
            "flare_step_ort_over_torch": figures["flare_step_ms_t100"] / torch_ms,
            "flare_step_int8_over_torch": figures["flare_step_int8_ms_t100"] / torch_ms,
            "flare_step_int8_max_logit_diff": figures["flare_step_int8_max_logit_diff"],
            "flare_step_int8_same_action": figures["flare_step_int8_same_action"],
        }
    print(" ".join(f"{k}={v:.3f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()

"""Independent reference implementation of the FLaRe policy, for tests only.

Written from FLaRe's upstream source (github.com/JiahengHu/FLaRe), not from this repository's model code:
- architecture/models/allenact_transformer_models/allenact_dino_transformer.py (DinoLLAMATxNavActorCritic,
  DinoTxGoalEncoder) and separate_actor_critic.py (the critic's copy under ``critic_tsfm.``);
- architecture/allenact_preprocessors/dino_preprocessors.py (DinoViTEmbedder: crop ``x[..., 3:-3]``,
  ``x_norm_patchtokens`` on the 16x27 grid, AdaptiveAvgPool2d((7, 12)));
- architecture/models/transformer_models/text_cond_visual_encoder.py (PositionalEncoder);
- training/online/third_party_models/llama/model.py (TransformerDecoder: RMSNorm, no rotary embedding, SwiGLU);
- training/offline/train_utils.py (load_pl_ckpt_allenact) and allenact's LinearActorHead / LinearCriticHead;
- facebookresearch/dinov2 models/vision_transformer.py (torch.hub position-table interpolation by scale factor).
Everything is plain functional torch; only the T5 encoder (upstream's own text encoder) runs as the HF module.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

VE = "visual_encoder."
T5_PREFIX = VE + "text_encoder."
FUSION_LAYERS, FUSION_HEADS, FUSION_FF = 3, 8, 2048  # nn.TransformerEncoderLayer(d_model=512, nhead=8), 3 layers
DECODER_LAYERS, DECODER_HEADS = 3, 8  # LLaMA ModelArgs(dim=512, n_layers=3, n_heads=8)


def _llama_ffn_hidden(d: int, multiple_of: int = 256) -> int:
    hidden = int(2 * (4 * d) / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)  # 1536 for d = 512


def actor_spec(num_actions: int = 20, dinov2_dim: int = 384, d: int = 512, text_dim: int = 512) -> dict:
    """Upstream actor keys (without text_encoder.* and time_encoder.div_term) -> (shape, init kind)."""
    w, b, g, e = "w", "b", "g", "e"  # weight ~0.05 N, bias ~0.02 N, norm gain ~1 +- 0.1, embedding ~0.5 N
    spec = {
        VE + "fusion_token": ((d,), e),
        VE + "visual_sensor_token_raw_navigation_camera": ((d,), e),
        VE + "visual_sensor_token_raw_manipulation_camera": ((d,), e),
        VE + "text_adapter.0.weight": ((d, text_dim), w),
        VE + "text_adapter.0.bias": ((d,), b),
        VE + "text_adapter.1.weight": ((d,), g),
        VE + "text_adapter.1.bias": ((d,), b),
        VE + "visual_compressor.0.weight": ((d, dinov2_dim, 1, 1), w),
        VE + "visual_compressor.0.bias": ((d,), b),
        VE + "visual_compressor.2.weight": ((d, d, 1, 1), w),
        VE + "visual_compressor.2.bias": ((d,), b),
        VE + "visual_adapter.0.weight": ((d, d), w),
        VE + "visual_adapter.0.bias": ((d,), b),
        VE + "visual_adapter.1.weight": ((d,), g),
        VE + "visual_adapter.1.bias": ((d,), b),
    }
    for i in range(FUSION_LAYERS):
        pre = f"{VE}fusion_xformer.layers.{i}."
        spec[pre + "self_attn.in_proj_weight"] = ((3 * d, d), w)
        spec[pre + "self_attn.in_proj_bias"] = ((3 * d,), b)
        spec[pre + "self_attn.out_proj.weight"] = ((d, d), w)
        spec[pre + "self_attn.out_proj.bias"] = ((d,), b)
        spec[pre + "linear1.weight"] = ((FUSION_FF, d), w)
        spec[pre + "linear1.bias"] = ((FUSION_FF,), b)
        spec[pre + "linear2.weight"] = ((d, FUSION_FF), w)
        spec[pre + "linear2.bias"] = ((d,), b)
        for n in ("norm1", "norm2"):
            spec[f"{pre}{n}.weight"] = ((d,), g)
            spec[f"{pre}{n}.bias"] = ((d,), b)
    spec["object_in_hand_embed.weight"] = ((3, d), e)
    spec["last_actions_embed.weight"] = ((num_actions + 2, d), e)
    hidden = _llama_ffn_hidden(d)
    for i in range(DECODER_LAYERS):
        pre = f"decoder.layers.{i}."
        for n in ("wq", "wk", "wv", "wo"):
            spec[f"{pre}attention.{n}.weight"] = ((d, d), w)
        spec[pre + "feed_forward.w1.weight"] = ((hidden, d), w)
        spec[pre + "feed_forward.w2.weight"] = ((d, hidden), w)
        spec[pre + "feed_forward.w3.weight"] = ((hidden, d), w)
        spec[pre + "attention_norm.weight"] = ((d,), g)
        spec[pre + "ffn_norm.weight"] = ((d,), g)
    spec["decoder.norm.weight"] = ((d,), g)
    spec["decoder.output.weight"] = ((d, d), w)  # ModelArgs.vocab_size = obs_embed_size = 512
    spec["actor.linear.weight"] = ((num_actions, d), w)
    spec["actor.linear.bias"] = ((num_actions,), b)
    spec["critic.fc.weight"] = ((1, d), w)
    spec["critic.fc.bias"] = ((1,), b)
    return spec


def official_state_dict(t5, seed: int = 0, num_actions: int = 20, dinov2_dim: int = 384, d: int = 512) -> dict:
    """A random-valued state dict with DinoLLAMATxNavActorCritic's key names and shapes."""
    gen = torch.Generator().manual_seed(seed)
    scale = {"w": 0.05, "b": 0.02, "g": 0.1, "e": 0.5}
    sd = {}
    spec = actor_spec(num_actions, dinov2_dim, d, t5.config.d_model)
    for key, (shape, kind) in spec.items():
        value = torch.randn(shape, generator=gen) * scale[kind]
        sd[key] = value + 1.0 if kind == "g" else value
    for key, value in t5.state_dict().items():
        sd[T5_PREFIX + key] = value.detach().clone()
    sd["time_encoder.div_term"] = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
    return sd


def rl_checkpoint(actor_sd: dict, critic_sd: dict, total_steps: int = 12345) -> dict:
    """AllenAct checkpoint of DinoLLAMATxNavActorCriticSeparate (critic copy under critic_tsfm.)."""
    model = {**actor_sd, **{"critic_tsfm." + k: v for k, v in critic_sd.items()}}
    return {
        "model_state_dict": model,
        "total_steps": total_steps,
        "optimizer_state_dict": {},
        "training_pipeline_state_dict": {},
        "trainer_seed": 0,
    }


def il_checkpoint(actor_sd: dict, dinov2_hub_keys: dict | None = None) -> dict:
    """Lightning checkpoint of the IL model: ``model.`` prefix, ``actor.{weight,bias}``, no critic head."""
    state = {}
    for k, v in actor_sd.items():
        if k.startswith("critic."):
            continue
        state["model." + k.replace("actor.linear.", "actor.")] = v
    for k, v in (dinov2_hub_keys or {}).items():
        state["model.visual_encoder.image_encoder.model." + k] = v
    return {"state_dict": state, "epoch": 0, "global_step": 50000, "pytorch-lightning_version": "2.0.0"}


def _attend(q: Tensor, k: Tensor, v: Tensor, heads: int, mask: Tensor | None = None) -> Tensor:
    """softmax(q k^T / sqrt(head_dim) + mask) v over ``heads`` heads; [B, S, D] in and out."""
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(scores if mask is None else scores + mask, dim=-1).matmul(v).transpose(1, 2).flatten(2)


_HF_OLD_NAMES = {"q_proj": "attention.query", "k_proj": "attention.key", "v_proj": "attention.value"}


def _dino_linear(sd: dict, layer: int, name: str) -> tuple[Tensor, Tensor]:
    pre = f"encoder.layer.{layer}.attention."
    key = pre + name if pre + name + ".weight" in sd else pre + _HF_OLD_NAMES.get(name, "output.dense")
    return sd[key + ".weight"], sd[key + ".bias"]


@torch.no_grad()
def dinov2_patch_tokens(dinov2, crop: Tensor, hub_interpolation: bool = True) -> Tensor:
    """Final-layernormed DINOv2 patch tokens [N, rows*cols, D] (torch.hub ``x_norm_patchtokens``)."""
    sd, cfg = dinov2.state_dict(), dinov2.config
    dim, heads, eps = cfg.hidden_size, cfg.num_attention_heads, cfg.layer_norm_eps
    proj = "embeddings.patch_embeddings.projection."
    patches = F.conv2d(crop, sd[proj + "weight"], sd[proj + "bias"], stride=cfg.patch_size)
    n, _, rows, cols = patches.shape
    pos = sd["embeddings.position_embeddings"].float()
    side = int(math.sqrt(pos.shape[1] - 1))
    if rows * cols != side * side or rows != cols:
        grid = pos[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
        if hub_interpolation:  # dinov2 interpolate_pos_encoding, interpolate_offset 0.1, antialias False
            factor = ((rows + 0.1) / side, (cols + 0.1) / side)
            grid = F.interpolate(grid, scale_factor=factor, mode="bicubic", antialias=False)
        else:  # transformers' Dinov2Embeddings: resize to the target grid
            grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
        assert grid.shape[-2:] == (rows, cols)
        pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)], dim=1)
    h = torch.cat([sd["embeddings.cls_token"].expand(n, -1, -1), patches.flatten(2).transpose(1, 2)], 1) + pos
    for i in range(cfg.num_hidden_layers):
        pre = f"encoder.layer.{i}."
        a = F.layer_norm(h, (dim,), sd[pre + "norm1.weight"], sd[pre + "norm1.bias"], eps)
        att = _attend(*(F.linear(a, *_dino_linear(sd, i, f"{c}_proj")) for c in "qkv"), heads)
        h = h + sd[pre + "layer_scale1.lambda1"] * F.linear(att, *_dino_linear(sd, i, "o_proj"))
        m = F.layer_norm(h, (dim,), sd[pre + "norm2.weight"], sd[pre + "norm2.bias"], eps)
        m = F.gelu(F.linear(m, sd[pre + "mlp.fc1.weight"], sd[pre + "mlp.fc1.bias"]))
        h = h + sd[pre + "layer_scale2.lambda1"] * F.linear(m, sd[pre + "mlp.fc2.weight"], sd[pre + "mlp.fc2.bias"])
    return F.layer_norm(h, (dim,), sd["layernorm.weight"], sd["layernorm.bias"], eps)[:, 1:]


@torch.no_grad()
def dinov2_features(dinov2, images: Tensor, hub_interpolation: bool = True) -> Tensor:
    """DinoViTEmbedder: normalised [N, 3, 224, 384] -> [N, D, 7, 12]."""
    crop = images[..., 3:-3]
    tokens = dinov2_patch_tokens(dinov2, crop, hub_interpolation)
    grid = tokens.transpose(1, 2).reshape(crop.shape[0], -1, crop.shape[-2] // 14, crop.shape[-1] // 14)
    return F.adaptive_avg_pool2d(grid, (7, 12))


class _Reads:
    """Read-only view of a state dict that records which keys were read."""

    def __init__(self, sd: dict, reads: set | None):
        self.sd, self.reads = sd, reads if reads is not None else set()

    def __getitem__(self, key: str) -> Tensor:
        self.reads.add(key)
        return self.sd[key]

    def prefixed(self, prefix: str) -> dict:
        return {k[len(prefix) :]: self[k] for k in self.sd if k.startswith(prefix)}


def _linear_ln_relu(p: _Reads, pre: str, x: Tensor) -> Tensor:
    x = F.linear(x, p[pre + "0.weight"], p[pre + "0.bias"])
    return F.relu(F.layer_norm(x, x.shape[-1:], p[pre + "1.weight"], p[pre + "1.bias"], 1e-5))


def _fusion_layer(p: _Reads, pre: str, x: Tensor) -> Tensor:
    """Post-norm nn.TransformerEncoderLayer (ReLU, eval: dropout off)."""
    qkv = F.linear(x, p[pre + "self_attn.in_proj_weight"], p[pre + "self_attn.in_proj_bias"])
    att = _attend(*qkv.chunk(3, dim=-1), FUSION_HEADS)
    att = F.linear(att, p[pre + "self_attn.out_proj.weight"], p[pre + "self_attn.out_proj.bias"])
    d = x.shape[-1:]
    x = F.layer_norm(x + att, d, p[pre + "norm1.weight"], p[pre + "norm1.bias"], 1e-5)
    ff = F.relu(F.linear(x, p[pre + "linear1.weight"], p[pre + "linear1.bias"]))
    ff = F.linear(ff, p[pre + "linear2.weight"], p[pre + "linear2.bias"])
    return F.layer_norm(x + ff, d, p[pre + "norm2.weight"], p[pre + "norm2.bias"], 1e-5)


def _rms(x: Tensor, weight: Tensor, eps: float = 1e-5) -> Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


@torch.no_grad()
def reference_forward(
    sd: dict,
    dinov2,
    t5,
    nav: Tensor,
    manip: Tensor,
    input_ids: Tensor,
    prev_actions: Tensor,
    holding: Tensor,
    steps: Tensor,
    reads: set | None = None,
) -> tuple[Tensor, Tensor]:
    """One episode of T steps, batch 1, eval mode -> (logits [T, num_actions], values [T]).

    ``reads``, when given, collects every key of ``sd`` that was read.
    """
    p = _Reads(sd, reads)
    n_steps = nav.shape[0]
    feats = dinov2_features(dinov2, torch.cat([nav, manip]))  # [2T, 384, 7, 12]
    cams = []
    for feat, cam in ((feats[:n_steps], "navigation"), (feats[n_steps:], "manipulation")):
        h = F.relu(F.conv2d(feat, p[VE + "visual_compressor.0.weight"], p[VE + "visual_compressor.0.bias"]))
        h = F.relu(F.conv2d(h, p[VE + "visual_compressor.2.weight"], p[VE + "visual_compressor.2.bias"]))
        h = _linear_ln_relu(p, VE + "visual_adapter.", h.flatten(2).transpose(1, 2))  # [T, 84, d], row-major
        cams.append(h + p[f"{VE}visual_sensor_token_raw_{cam}_camera"])
    was_training = t5.training
    t5.eval()
    try:
        params = p.prefixed(T5_PREFIX)
        text = functional_call(t5, params, (), {"input_ids": input_ids}, tie_weights=False, strict=True)
    finally:
        t5.train(was_training)
    text = _linear_ln_relu(p, VE + "text_adapter.", text.last_hidden_state)  # [1, L, d]
    fusion = p[VE + "fusion_token"]
    x = torch.cat([fusion.expand(n_steps, 1, -1), *cams, text.expand(n_steps, -1, -1)], dim=1)
    for i in range(FUSION_LAYERS):
        x = _fusion_layer(p, f"{VE}fusion_xformer.layers.{i}.", x)
    x = x[:, 0] + p["last_actions_embed.weight"][prev_actions.long()]
    x = x + p["object_in_hand_embed.weight"][holding.long()]
    angle = steps.float()[:, None] * p["time_encoder.div_term"]
    x = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1) + x  # sin on even, cos on odd indices
    h = x[None]  # [1, T, d]
    causal = torch.full((n_steps, n_steps), float("-inf")).triu(1)
    for i in range(DECODER_LAYERS):
        pre = f"decoder.layers.{i}."
        a = _rms(h, p[pre + "attention_norm.weight"])
        att = _attend(*(F.linear(a, p[f"{pre}attention.w{c}.weight"]) for c in "qkv"), DECODER_HEADS, causal)
        h = h + F.linear(att, p[pre + "attention.wo.weight"])
        f = _rms(h, p[pre + "ffn_norm.weight"])
        gate = F.silu(F.linear(f, p[pre + "feed_forward.w1.weight"])) * F.linear(f, p[pre + "feed_forward.w3.weight"])
        h = h + F.linear(gate, p[pre + "feed_forward.w2.weight"])
    beliefs = F.linear(_rms(h, p["decoder.norm.weight"]), p["decoder.output.weight"])[0]
    logits = F.linear(beliefs, p["actor.linear.weight"], p["actor.linear.bias"])
    values = F.linear(beliefs, p["critic.fc.weight"], p["critic.fc.bias"])[:, 0]
    return logits, values

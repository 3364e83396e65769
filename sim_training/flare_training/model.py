"""The policy network, shaped like FLaRe's: per-camera visual encoders, a goal encoder, one fused token per
step, a causal transformer decoder (LLaMA-style: RMSNorm, SwiGLU) with a KV-cache, and actor/critic heads.

One decoder, one block forward; what differs between uses is only where attention takes its keys and values
from, an attention strategy passed in (tests hold them to agree):
- `SequenceAttention`: whole sequences with a block-causal mask, each step attending only to earlier steps of
  its own episode (updates, behaviour cloning);
- `CachedStepAttention`: one step per call against a KV-cache (rollouts);
- the export's strategies (`flare_training.export`): the past as explicit graph inputs, concatenated or
  written in place.
Time encoding is the step index within the episode, so all of them see identical inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from flare_core.actions import NO_PREVIOUS_ACTION, NUM_ACTIONS


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. Defaults are the embedded-simulator size; FLaRe's is d_model=512, layers=3, heads=8."""

    d_model: int = 96
    layers: int = 2
    heads: int = 4
    max_context: int = 128  # longest episode the cache holds (gridhouse step limits are <= 100)
    visual: str = "cnn"  # "cnn" (trained by BC) or "dinov2" (frozen, weights from dinov2_path)
    dinov2_path: str = ""
    visual_dim: int = 128  # per-camera feature size
    goal_encoder: str = "words"  # "words" (trained embeddings) or "t5" (frozen T5 encoder from t5_path)
    t5_path: str = ""
    goal_dim: int = 128
    goal_embed_dim: int = 32
    vocab_size: int = 64
    max_goal_tokens: int = 16
    # How a step's frames meet its goal. "pooled": one global vector per camera (the CNN's projection, the
    # DINOv2 option's CLS feature), concatenated with the goal. "film" (CNN only): each camera's feature map
    # (one cell per grid tile) is modulated channel-wise by the goal (FiLM, as BabyAI agents ground
    # instructions) and flattened into the step token, so "which object where" survives; it needs a
    # pretrained perception encoder (`flare_training perception`) and costs ~20 % PPO throughput.
    fusion: str = "pooled"
    # FiLM only: a per-cell head on the goal-modulated feature maps says which cells show the object the goal
    # names; its logits join the step token, and BC trains it on the gridhouse's labels (`bc --goal-cell-coef`;
    # measured with `bc --lr 1e-3`: at 2e-4 the heads barely learn)
    goal_cells: bool = False
    shared_critic: bool = False  # FLaRe: False (the critic is a separate copy of the network)

    def __post_init__(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} must be divisible by heads {self.heads}")
        if self.visual not in ("cnn", "dinov2"):
            raise ValueError(f"visual must be 'cnn' or 'dinov2', got {self.visual!r}")
        if self.visual == "dinov2" and not self.dinov2_path:
            raise ValueError("visual='dinov2' needs dinov2_path: a local directory with the weights (no downloads)")
        if self.fusion not in ("film", "pooled"):
            raise ValueError(f"fusion must be 'film' or 'pooled', got {self.fusion!r}")
        if self.fusion == "film" and self.visual != "cnn":
            raise ValueError("fusion='film' needs the CNN's feature maps; use fusion='pooled' with visual='dinov2'")
        if self.goal_cells and self.fusion != "film":
            raise ValueError("goal_cells reads the FiLM-modulated feature maps: it needs fusion='film'")
        if self.goal_encoder not in ("words", "t5"):
            raise ValueError(f"goal_encoder must be 'words' or 't5', got {self.goal_encoder!r}")
        if self.goal_encoder == "t5" and not self.t5_path:
            raise ValueError("goal_encoder='t5' needs t5_path: a local directory with T5 weights and tokenizer")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads


# --- perception ----------------------------------------------------------------------------------------------
class CnnEncoder(nn.Module):
    """A small conv net for the embedded simulator's low-resolution frames (8 px tiles: three stride-2 convs
    leave one cell per tile). `spatial`: return the feature map flattened (channels x cells) instead of a
    projected global vector."""

    def __init__(self, height: int, width: int, out_dim: int, spatial: bool = False) -> None:
        super().__init__()
        # In-place ReLUs (a convolution's backward needs its input, not its output): a third less time for a
        # forward pass without gradients (acting, with --train-visual), the same with them (measured).
        self.convs = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, 3, height, width)).shape[1]
        self.channels = self.convs[-3].out_channels  # the last conv's
        self.out_dim = flat if spatial else out_dim
        self.proj = nn.Identity() if spatial else nn.Sequential(nn.Linear(flat, out_dim), nn.ReLU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convs(images))

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """[B, channels, cells]: one feature vector per grid tile, row-major (what `spatial` flattens)."""
        return self.convs[:-1](images).flatten(2)


def _cache_position_encoding(embeddings: nn.Module) -> None:
    """Resize the frozen position table to a camera's patch grid once per frame size, not on every call.

    Dinov2Model re-interpolates (bicubic) its 37 x 37 table for each non-square frame; with the weights frozen
    the result never changes. Cached, torch skips the work and an exported graph holds the table as a
    constant: the bicubic Resize was a quarter of ONNX Runtime's time for two 224 x 384 cameras.
    """
    original = embeddings.interpolate_pos_encoding
    cache: dict[tuple, torch.Tensor] = {}

    def interpolate(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        # Per device too: a deep copy of the encoder (the CPU one the env workers run) shares this closure.
        key = (int(tokens.shape[1]), int(height), int(width), tokens.device)
        if key not in cache:
            cache[key] = original(tokens, height, width).detach().to(tokens.device)
        return cache[key]

    embeddings.interpolate_pos_encoding = interpolate


class Dinov2Encoder(nn.Module):
    """Frozen DINOv2 (Hugging Face Dinov2Model) from a local directory; its CLS feature, projected."""

    def __init__(self, path_or_model: str | nn.Module, out_dim: int) -> None:
        super().__init__()
        from transformers import Dinov2Model  # lazily: only this option needs transformers

        backbone = Dinov2Model.from_pretrained(path_or_model) if isinstance(path_or_model, str) else path_or_model
        backbone.requires_grad_(False).eval()
        _cache_position_encoding(backbone.embeddings)
        self.backbone = backbone
        self.out_dim = out_dim
        self.proj = nn.Sequential(nn.Linear(backbone.config.hidden_size, out_dim), nn.ReLU())

    def train(self, mode: bool = True) -> Dinov2Encoder:
        super().train(mode)
        self.backbone.eval()  # frozen: never in training mode
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(pixel_values=images).pooler_output)


class VisualEncoder(nn.Module):
    """One encoder per camera; output [..., cameras * visual_dim]."""

    def __init__(self, config: ModelConfig, camera_shapes: dict[str, tuple[int, int]]) -> None:
        super().__init__()
        self.cameras = tuple(camera_shapes)
        spatial = config.fusion == "film"
        if config.visual == "cnn":
            encoders = {n: CnnEncoder(h, w, config.visual_dim, spatial) for n, (h, w) in camera_shapes.items()}
        else:
            encoders = {n: Dinov2Encoder(config.dinov2_path, config.visual_dim) for n in camera_shapes}
        self.encoders = nn.ModuleDict(encoders)
        # film: per camera (channels, cells) of its feature map, in output order
        self.maps = {n: (e.channels, e.out_dim // e.channels) for n, e in encoders.items()} if spatial else {}
        self.out_dim = sum(e.out_dim for e in encoders.values())

    def forward(self, frames: dict[str, torch.Tensor]) -> torch.Tensor:
        """frames[camera]: [..., 3, H, W] float (already preprocessed) -> [..., out_dim]."""
        feats = []
        for name in self.cameras:
            x = frames[name]
            lead = x.shape[:-3]
            encoder = self.encoders[name]
            feats.append(encoder(x.reshape(-1, *x.shape[-3:])).reshape(*lead, encoder.out_dim))  # lead may hold a 0
        return torch.cat(feats, dim=-1)


class GoalEncoder(nn.Module):
    """Word embeddings at fixed positions, flattened and projected: order-aware ("put A next to B" is not
    "put B next to A"), and a plain matrix product in ONNX."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.goal_embed_dim, padding_idx=0)
        self.proj = nn.Sequential(nn.Linear(config.max_goal_tokens * config.goal_embed_dim, config.goal_dim), nn.ReLU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[:-1].numel() < 512:  # single steps (and the exported graph): nothing to share
            return self.proj(self.embed(tokens).flatten(-2))
        # Whole sequences: a goal is constant over an episode, so encode each run of identical consecutive goals
        # once (a comparison with the previous row; torch.unique over rows was 13 % of a PPO update).
        flat = tokens.reshape(-1, tokens.shape[-1])
        new_run = torch.ones(len(flat), dtype=torch.bool, device=flat.device)
        new_run[1:] = (flat[1:] != flat[:-1]).any(-1)
        encoded = self.proj(self.embed(flat[new_run]).flatten(-2))
        return encoded[new_run.cumsum(0) - 1].reshape(*tokens.shape[:-1], -1)


class T5GoalEncoder(nn.Module):
    """Frozen T5 encoder (Hugging Face T5EncoderModel + its tokenizer, from a local directory), mean-pooled.

    It reads the same word ids as the word encoder: ids -> goal text (through the card's vocabulary) -> T5.
    The encoder is frozen, so each distinct goal is encoded once and remembered.
    """

    def __init__(self, path: str, vocab: tuple[str, ...], out_dim: int) -> None:
        super().__init__()
        from transformers import AutoTokenizer, T5EncoderModel  # lazily: only this option needs transformers

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.t5 = T5EncoderModel.from_pretrained(path).requires_grad_(False).eval()
        self.vocab = vocab
        self.proj = nn.Sequential(nn.Linear(self.t5.config.d_model, out_dim), nn.ReLU())
        self._memo: dict[tuple[str, torch.device], torch.Tensor] = {}  # per goal text and device

    def train(self, mode: bool = True) -> T5GoalEncoder:
        super().train(mode)
        self.t5.eval()
        return self

    def _encode(self, text: str) -> torch.Tensor:
        device = self.proj[0].weight.device
        if (text, device) not in self._memo:
            with torch.no_grad():
                enc = self.tokenizer(text, return_tensors="pt").to(device)
                hidden = self.t5(**enc).last_hidden_state[0]
                mask = enc["attention_mask"]
                self._memo[text, device] = (hidden * mask[0, :, None]).sum(0) / mask.sum()
        return self._memo[text, device]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        flat = tokens.reshape(-1, tokens.shape[-1]).tolist()
        texts = [" ".join(self.vocab[i] for i in row if i > 1) for row in flat]
        feats = torch.stack([self._encode(t) for t in texts]).reshape(*tokens.shape[:-1], -1)
        return self.proj(feats)


# --- decoder ---------------------------------------------------------------------------------------------------
# LLaMA's decoder as FLaRe runs it (training/online/third_party_models/llama/model.py): pre-RMSNorm blocks,
# SwiGLU, no rotary embedding (time enters through the step token), a final norm and optionally FLaRe's
# `output` projection. Parameter names are upstream's, so FLaRe's checkpoints load into it by name.
class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class FeedForward(nn.Module):
    """SwiGLU, w2(silu(w1 x) * w3 x); hidden size 2/3 of 4 * dim, rounded up to `multiple_of` (FLaRe: 256,
    giving 1536 at dim 512)."""

    def __init__(self, dim: int, multiple_of: int = 1) -> None:
        super().__init__()
        hidden = int(2 * 4 * dim / 3)
        hidden = multiple_of * -(-hidden // multiple_of)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.wq, self.wk, self.wv = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.wo = nn.Linear(dim, dim, bias=False)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, T, D] -> q, k, v as [B, heads, T, head_dim]."""
        b, t, _ = x.shape
        return tuple(w(x).view(b, t, self.heads, self.head_dim).transpose(1, 2) for w in (self.wq, self.wk, self.wv))


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    """[B, heads, T, head_dim] -> [B, T, heads * head_dim] (head-major, as the projections lay them out)."""
    b, heads, t, d = y.shape
    return y.transpose(1, 2).reshape(b, t, heads * d)


class AttentionStrategy(Protocol):
    """Where a layer's attention finds its keys and values: (layer, q, k, v [B, heads, T, head_dim]) ->
    the attended values [B, T, heads * head_dim]."""

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor: ...


class SequenceAttention:
    """Whole sequences [B, T]: each step attends to earlier steps with the same episode id. With `keep_kv` (a
    list), each layer's (keys, values) are appended to it, to seed a KVCache."""

    def __init__(self, episode: torch.Tensor, keep_kv: list | None = None) -> None:
        t = episode.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=episode.device).tril()
        self.mask = (causal & (episode[:, :, None] == episode[:, None, :]))[:, None]
        self.keep_kv = keep_kv

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.keep_kv is not None:
            self.keep_kv.append((k, v))
        return merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask))


class CachedStepAttention:
    """One new step per row [B, 1], appended to `cache` and attending over each row's filled part of it. The
    caller advances the cache once every layer has run."""

    def __init__(self, cache: KVCache) -> None:
        self.cache = cache
        self.filled, self.mask = cache.window()

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        keys, values = self.cache.append(layer, k, v, self.filled)
        return merge_heads(F.scaled_dot_product_attention(q, keys, values, attn_mask=self.mask))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, norm_eps: float, multiple_of: int) -> None:
        super().__init__()
        self.attention, self.attention_norm = Attention(dim, heads), RMSNorm(dim, norm_eps)
        self.feed_forward, self.ffn_norm = FeedForward(dim, multiple_of), RMSNorm(dim, norm_eps)

    def forward(self, x: torch.Tensor, layer: int, attention: AttentionStrategy) -> torch.Tensor:
        q, k, v = self.attention.project(self.attention_norm(x))
        x = x + self.attention.wo(attention(layer, q, k, v))
        return x + self.feed_forward(self.ffn_norm(x))


class TransformerDecoder(nn.Module):
    """The causal transformer over step tokens, for both model families; attention as the strategy has it."""

    def __init__(
        self, dim: int, layers: int, heads: int, norm_eps: float = 1e-6, multiple_of: int = 1, output: bool = False
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.layers = nn.ModuleList(TransformerBlock(dim, heads, norm_eps, multiple_of) for _ in range(layers))
        self.norm = RMSNorm(dim, norm_eps)
        self.output = nn.Linear(dim, dim, bias=False) if output else None

    def forward(self, x: torch.Tensor, attention: AttentionStrategy) -> torch.Tensor:
        """Tokens [B, T, dim] -> [B, T, dim]."""
        for layer, block in enumerate(self.layers):
            x = block(x, layer, attention)
        x = self.norm(x)
        return x if self.output is None else self.output(x)


class StepTokens(nn.Module):
    """The embedded model's step token: visual features (FiLM: the goal-modulated maps, and the goal-cell
    heads' logits if any), goal, previous action and holding fused by a linear layer, plus a learned time
    embedding."""

    def __init__(
        self, config: ModelConfig, visual_dim: int, vocab: tuple[str, ...] = (), maps: dict | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.maps = dict(maps or {})  # film: camera -> (channels, cells)
        self.film = nn.ModuleDict({n: nn.Linear(config.goal_dim, 2 * c) for n, (c, _) in self.maps.items()})
        heads = self.maps if config.goal_cells else {}  # built only when used: they draw from torch's RNG
        self.cell_heads = nn.ModuleDict(
            {n: nn.Sequential(nn.Conv1d(c, 32, 1), nn.ReLU(), nn.Conv1d(32, 1, 1)) for n, (c, _) in heads.items()}
        )
        visual_dim += sum(cells for _, cells in heads.values())
        self.goal = (
            T5GoalEncoder(config.t5_path, vocab, config.goal_dim)
            if config.goal_encoder == "t5"
            else GoalEncoder(config)
        )
        self.prev_action = nn.Embedding(NO_PREVIOUS_ACTION + 1, 32)
        self.holding = nn.Embedding(2, 16)
        self.fuse = nn.Linear(visual_dim + config.goal_dim + 32 + 16, config.d_model)
        self.time = nn.Embedding(config.max_context, config.d_model)

    def forward(self, visual, goal_tokens, prev_action, holding, step) -> torch.Tensor:
        """Per-step inputs [B, T, ...] -> tokens [B, T, d_model]."""
        return self.encode(visual, goal_tokens, prev_action, holding, step)[0]

    def encode(self, visual, goal_tokens, prev_action, holding, step) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The tokens, and the goal-cell heads' logits per camera [B, T, cells] that went into them (none
        without `goal_cells`): the goal-cell loss reads them from the same pass."""
        goal = self.goal(goal_tokens)
        cells = {}
        if self.maps:
            maps = self.condition(visual, goal)
            cells = self.goal_cell_logits(maps)
            visual = torch.cat([m.flatten(-2) for m in maps.values()] + list(cells.values()), dim=-1)
        x = torch.cat([visual, goal, self.prev_action(prev_action), self.holding(holding)], dim=-1)
        return self.fuse(x) + self.time(step.clamp(max=self.config.max_context - 1)), cells

    def condition(self, visual: torch.Tensor, goal: torch.Tensor) -> dict[str, torch.Tensor]:
        """FiLM: each camera's feature map [..., channels, cells] scaled and shifted per channel by the goal."""
        out, start = {}, 0
        for name, (channels, cells) in self.maps.items():
            fmap = visual[..., start : start + channels * cells].unflatten(-1, (channels, cells))
            gamma, beta = self.film[name](goal).unsqueeze(-1).chunk(2, dim=-2)
            out[name] = torch.relu(fmap * (1 + gamma) + beta)
            start += channels * cells
        return out

    def goal_cell_logits(self, maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per camera with a cell head, [..., cells]: how strongly each cell shows the goal's object."""
        out = {}
        for name, head in self.cell_heads.items():
            fmap = maps[name]
            out[name] = head(fmap.reshape(-1, *fmap.shape[-2:])).reshape(fmap.shape[:-2] + fmap.shape[-1:])
        return out


class KVCache:
    """Per-row key/value buffers for step-by-step decoding, [layers] x [B, heads, max_context, head_dim].

    Each row holds one episode; `reset(rows)` empties rows whose episode ended. Attention covers only the
    filled positions of each row.
    """

    def __init__(self, config: ModelConfig, batch: int, device: torch.device | str = "cpu") -> None:
        shape = (batch, config.heads, config.max_context, config.head_dim)
        self.keys = [torch.zeros(shape, device=device) for _ in range(config.layers)]
        self.values = [torch.zeros(shape, device=device) for _ in range(config.layers)]
        self.length = torch.zeros(batch, dtype=torch.long, device=device)
        self.max_context = config.max_context
        self._rows = torch.arange(batch, device=device)
        self._positions = torch.arange(config.max_context, device=device)

    @property
    def step(self) -> torch.Tensor:
        """Each row's step index within its episode: the time input of the next token."""
        return self.length.clone()

    def reset(self, rows: torch.Tensor) -> None:
        self.length[rows.to(self.length.device)] = 0

    def load(self, kv: list[tuple[torch.Tensor, torch.Tensor]], lengths: torch.Tensor) -> None:
        """Fill every row from a sequence pass that started at its episode's first step (rows left-aligned)."""
        n = kv[0][0].shape[2]
        if n > self.max_context:
            raise RuntimeError(f"prefix of {n} steps exceeds the cache's max_context ({self.max_context})")
        for layer, (k, v) in enumerate(kv):
            self.keys[layer][:, :, :n] = k
            self.values[layer][:, :, :n] = v
        self.length.copy_(lengths)

    def window(self) -> tuple[int, torch.Tensor]:
        """For the step about to be appended: how many positions attention covers (the filled part of the
        buffers only) and the [B, 1, 1, filled] mask of each row's episode; the same for every layer."""
        filled = int(self.length.max()) + 1
        if filled > self.max_context:
            raise RuntimeError(
                f"episode longer than the cache's max_context ({self.max_context}); raise ModelConfig.max_context"
            )
        return filled, (self._positions[None, :filled] <= self.length[:, None])[:, None, None, :]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor, filled: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys[layer][self._rows, :, self.length] = k[:, :, 0]
        self.values[layer][self._rows, :, self.length] = v[:, :, 0]
        return self.keys[layer][:, :, :filled], self.values[layer][:, :, :filled]

    def advance(self) -> None:
        self.length += 1


def prime_cache(network, batch: dict[str, torch.Tensor], lengths: torch.Tensor, cache: KVCache) -> None:
    """Seed `cache` with each row's episode so far (batch rows left-aligned at their first step), from the keys
    and values of the network's sequence pass (`network.sequence(batch, keep_kv=...)`)."""
    kv: list = []
    if batch["step"].shape[1]:
        network.sequence(batch, keep_kv=kv)
        cache.load(kv, lengths)
    else:
        cache.reset(torch.arange(len(lengths)))


class PolicyNetwork(nn.Module):
    """Goal/step fusion + decoder + head(s) over shared (frozen or trained) visual features."""

    def __init__(
        self,
        config: ModelConfig,
        visual_dim: int,
        outputs: dict[str, int],
        vocab: tuple[str, ...] = (),
        maps: dict | None = None,
    ) -> None:
        super().__init__()
        self.tokens = StepTokens(config, visual_dim, vocab, maps)
        self.decoder = TransformerDecoder(config.d_model, config.layers, config.heads)
        self.heads = nn.ModuleDict({name: nn.Linear(config.d_model, n) for name, n in outputs.items()})

    def _heads(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(h) for name, head in self.heads.items()}

    def sequence(self, batch: dict[str, torch.Tensor], keep_kv: list | None = None) -> dict:
        """The heads' outputs [B, T, ...], and with goal-cell heads `goal_cells`: their logits per camera."""
        x, cells = self.tokens.encode(batch["visual"], batch["goal"], batch["prev_action"], batch["holding"],
                                      batch["step"])  # fmt: skip
        out = self._heads(self.decoder(x, SequenceAttention(batch["episode"], keep_kv)))
        return {**out, "goal_cells": cells} if cells else out

    def prime(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor, cache: KVCache) -> None:
        prime_cache(self, batch, lengths, cache)

    def step(self, inputs: dict[str, torch.Tensor], cache: KVCache) -> dict[str, torch.Tensor]:
        """inputs: [B, ...] for one step (no time axis)."""
        x = self.tokens(
            inputs["visual"][:, None],
            inputs["goal"][:, None],
            inputs["prev_action"][:, None],
            inputs["holding"][:, None],
            cache.step[:, None],
        )
        h = self.decoder(x, CachedStepAttention(cache))
        cache.advance()
        return {k: v[:, 0] for k, v in self._heads(h).items()}


class ActorCritic(nn.Module):
    """Visual encoder + actor (+ critic). FLaRe: the critic is a separate copy of the network; with
    `shared_critic` it is a value head on the actor's network (an ablation)."""

    def __init__(
        self, config: ModelConfig, camera_shapes: dict[str, tuple[int, int]], vocab: tuple[str, ...] = ()
    ) -> None:
        """`vocab` (the goal tokenizer's) is needed only by the T5 goal encoder, to turn ids back into text."""
        super().__init__()
        self.config = config
        self.camera_shapes = dict(camera_shapes)
        self.visual = VisualEncoder(config, camera_shapes)
        outputs = {"logits": NUM_ACTIONS, "value": 1} if config.shared_critic else {"logits": NUM_ACTIONS}
        dim, maps = self.visual.out_dim, self.visual.maps
        self.actor = PolicyNetwork(config, dim, outputs, vocab, maps)
        critic = None if config.shared_critic else PolicyNetwork(config, dim, {"value": 1}, vocab, maps)
        self.critic = critic

    def new_caches(self, batch: int) -> tuple[KVCache, KVCache | None]:
        device = next(self.parameters()).device
        critic = None if self.critic is None else KVCache(self.config, batch, device)
        return KVCache(self.config, batch, device), critic

    def sequence(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, T, A] and values [B, T] for whole sequences (batch["visual"] precomputed)."""
        out = self.actor.sequence(batch)
        value = out["value"] if self.critic is None else self.critic.sequence(batch)["value"]
        return out["logits"], value[..., 0]

    def step(self, inputs, actor_cache: KVCache, critic_cache: KVCache | None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.actor.step(inputs, actor_cache)
        value = out["value"] if self.critic is None else self.critic.step(inputs, critic_cache)["value"]
        return out["logits"], value[..., 0]

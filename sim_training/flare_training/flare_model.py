"""FLaRe's policy as a model family beside the embedded one: the network of FLaRe's released checkpoints.

Written from FLaRe's source (`architecture/models/allenact_transformer_models/allenact_dino_transformer.py`,
`DinoLLAMATxNavActorCritic`, and `separate_actor_critic.py`); every parameter has upstream's name and shape, so
FLaRe's state dicts load by name (`flare_training.flare_import`). Per step:
- each camera's 224 x 384 frame: frozen DINOv2-S/14 on the central 224 x 378, patch tokens 16 x 27 x 384
  average-pooled to 7 x 12 (`DinoFeatures`, shared by actor and critic, as upstream's preprocessor);
- `visual_encoder`: a 1x1-conv compressor and an adapter per camera (shared weights, one learned camera token
  each), the goal's T5 tokens through `text_adapter`, and a 3-layer post-norm transformer encoder over
  [fusion token, 84 nav tokens, 84 manip tokens, text tokens]; token 0 is the step's fused feature;
- step token = fused + previous-action embedding + holding embedding + sinusoidal encoding of the step index;
- the LLaMA decoder (`flare_training.model.TransformerDecoder`: RMSNorm eps 1e-5, SwiGLU 1536, `output`
  projection), then `actor.linear` (20 logits) and `critic.fc` (value).
The RL checkpoints carry a full second network for the value (`critic_tsfm.`); its actor head is unused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from flare_core.actions import NUM_ACTIONS
from flare_training.model import CachedStepAttention, KVCache, SequenceAttention, TransformerDecoder

# Our camera names -> upstream's sensor names (the `visual_sensor_token_<sensor>` parameters).
CAMERA_SENSORS = {"nav": "raw_navigation_camera", "manip": "raw_manipulation_camera"}
FRAME = (224, 384)  # the frame the model reads (SPOC's 396 x 224 render cropped 6 px each side)
POOL = (7, 12)  # DINOv2 patch grid 16 x 27 average-pooled to this


@dataclass(frozen=True)
class FlareConfig:
    """FLaRe's architecture (`small_3`, LLaMA decoder); the defaults are the released checkpoints'."""

    d_model: int = 512
    layers: int = 3
    heads: int = 8
    fusion_layers: int = 3
    fusion_heads: int = 8
    max_context: int = 1000  # FLaRe's max_steps: the cache and time encoding cover a whole evaluation episode
    max_goal_tokens: int = 32  # goal ids per row when training batches them (padding masked; robots: unpadded)
    dinov2_path: str = ""  # a Hugging Face DINOv2-S/14 directory (facebook/dinov2-small)
    t5_path: str = ""  # a Hugging Face T5 directory (t5-small): its config and tokenizer.json
    cameras: tuple[str, ...] = ("nav", "manip")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads


def hub_position_table(table: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """DINOv2's position table [1, 1 + M*M, D] resized to a rows x cols patch grid as torch.hub's dinov2_vits14
    does it (bicubic by *scale factor* (n + 0.1) / M, `interpolate_offset` 0.1), not as Hugging Face's
    Dinov2Model does (to the target size): FLaRe's features were computed this way."""
    m = math.isqrt(table.shape[1] - 1)
    grid = table[:, 1:].float().reshape(1, m, m, -1).permute(0, 3, 1, 2)
    scale = ((rows + 0.1) / m, (cols + 0.1) / m)
    grid = nn.functional.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
    return torch.cat([table[:, :1], grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)], dim=1).to(table.dtype)


def pooling_matrix(size_in: tuple[int, int], size_out: tuple[int, int]) -> torch.Tensor:
    """AdaptiveAvgPool2d(size_out) over a size_in grid as one [out cells, in cells] matrix (exact, and a plain
    MatMul in ONNX, where adaptive pooling with uneven bins does not export)."""

    def bins(n_in: int, n_out: int) -> torch.Tensor:
        weights = torch.zeros(n_out, n_in)
        for i in range(n_out):
            start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
            weights[i, start:end] = 1.0 / (end - start)
        return weights

    return torch.kron(bins(size_in[0], size_out[0]), bins(size_in[1], size_out[1]))


class DinoFeatures(nn.Module):
    """Frozen DINOv2 as FLaRe's DinoViTPreprocessor: [N, 3, 224, 384] normalised frames -> [N, 384, 7, 12]."""

    def __init__(self, path_or_model: str | nn.Module) -> None:
        super().__init__()
        from transformers import Dinov2Model  # lazily: only this family needs transformers

        backbone = Dinov2Model.from_pretrained(path_or_model) if isinstance(path_or_model, str) else path_or_model
        self.backbone = backbone.requires_grad_(False).eval()
        patch = backbone.config.patch_size
        self.grid = (FRAME[0] // patch, (FRAME[1] - 6) // patch)  # 16 x 27
        backbone.embeddings.interpolate_pos_encoding = self._position_table
        self._table: tuple[tuple[int, int], torch.Tensor] | None = None
        self.register_buffer("pool", pooling_matrix(self.grid, POOL), persistent=False)
        self.dim = backbone.config.hidden_size

    def train(self, mode: bool = True) -> DinoFeatures:
        super().train(mode)
        self.backbone.eval()  # frozen: never in training mode
        return self

    def _position_table(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The resized table, computed once per state of the weights (a constant of an exported graph)."""
        table = self.backbone.embeddings.position_embeddings
        key = (table.data_ptr(), table._version)
        if self._table is None or self._table[0] != key:
            self._table = (key, hub_position_table(table.detach(), *self.grid))
        return self._table[1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        patches = self.backbone(pixel_values=images[..., 3:-3]).last_hidden_state[:, 1:]  # [N, 432, 384], normed
        return (patches.transpose(1, 2) @ self.pool.T).reshape(-1, self.dim, *POOL)  # one plain matrix product

    def cameras(self, frames: dict[str, torch.Tensor], cameras: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """frames[camera] [..., 3, 224, 384] -> [..., 384, 7, 12] each, all cameras in one batch (larger matrix
        products, fewer calls); no gradient (frozen)."""
        lead = frames[cameras[0]].shape[:-3]
        with torch.no_grad():
            features = self(torch.cat([frames[c].reshape(-1, 3, *FRAME) for c in cameras])).chunk(len(cameras))
        return {c: f.reshape(*lead, -1, *POOL) for c, f in zip(cameras, features, strict=True)}


class PositionalEncoder(nn.Module):
    """Sinusoidal encoding of the step index: sin on even features, cos on odd (upstream's `div_term` buffer)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.register_buffer("div_term", torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model)))

    def forward(self, step: torch.Tensor) -> torch.Tensor:
        angles = step[..., None].float() * self.div_term
        return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class FusionLayer(nn.Module):
    """nn.TransformerEncoderLayer as FLaRe builds it (post-norm, ReLU, feed-forward 2048, dropout 0.1) with the
    same parameters, its forward written out so that the token count stays a dynamic axis in ONNX: a goal's
    length varies, and nn.MultiheadAttention's traced graph fixes it to the example's."""

    def __init__(self, d: int, heads: int, feed_forward: int = 2048, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)  # its parameters, upstream's names
        self.linear1, self.linear2 = nn.Linear(d, feed_forward), nn.Linear(feed_forward, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.heads, self.dropout = heads, dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [N, S, d]; mask [N, 1, 1, S], True where a token may be attended (None: all)."""
        n, d = x.shape[0], x.shape[2]
        p = self.dropout if self.training else 0.0
        qkv = F.linear(x, self.self_attn.in_proj_weight, self.self_attn.in_proj_bias)
        q, k, v = (t.reshape(n, -1, self.heads, d // self.heads).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        attended = attended.transpose(1, 2).reshape(n, -1, d)
        x = self.norm1(x + F.dropout(self.self_attn.out_proj(attended), p, self.training))
        hidden = F.dropout(F.relu(self.linear1(x)), p, self.training)
        return self.norm2(x + F.dropout(self.linear2(hidden), p, self.training))


class FusionTransformer(nn.Module):
    """nn.TransformerEncoder's layout (`layers.i`) of `FusionLayer`s."""

    def __init__(self, d: int, heads: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(FusionLayer(d, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x


class FusionEncoder(nn.Module):
    """Upstream's `visual_encoder` (DinoTxGoalEncoder): cameras and goal text fused into one feature per step."""

    def __init__(self, config: FlareConfig, t5: nn.Module, dino_dim: int = 384) -> None:
        super().__init__()
        d = config.d_model
        self.text_encoder = t5.requires_grad_(False).eval()
        self.text_adapter = nn.Sequential(nn.Linear(t5.config.d_model, d), nn.LayerNorm(d), nn.ReLU())
        self.fusion_token = nn.Parameter(0.1 * torch.rand(d))
        for camera in config.cameras:
            setattr(self, f"visual_sensor_token_{CAMERA_SENSORS[camera]}", nn.Parameter(0.1 * torch.rand(d)))
        self.visual_compressor = nn.Sequential(nn.Conv2d(dino_dim, d, 1), nn.ReLU(), nn.Conv2d(d, d, 1), nn.ReLU())
        self.visual_adapter = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d), nn.ReLU())
        self.fusion_xformer = FusionTransformer(d, config.fusion_heads, config.fusion_layers)
        self.cameras = config.cameras

    def train(self, mode: bool = True) -> FusionEncoder:
        super().train(mode)
        self.text_encoder.eval()  # frozen
        return self

    def encode_goal(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """T5 token ids [N, L] -> the goal's tokens for the fusion [N, L, d] (once per goal)."""
        with torch.no_grad():
            hidden = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.text_adapter(hidden)

    def forward(
        self, features: dict[str, torch.Tensor], goal: torch.Tensor, goal_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """features[camera] [N, 384, 7, 12]; goal [N, L, d] (`encode_goal`) -> fused [N, d]. `goal_mask` [N, L]
        (True for real tokens) keeps padding out of attention, so each row fuses as its goal alone would: a
        batch of goals of different lengths gives what the robot computes for each (upstream attends the
        padding of its batches)."""
        n = goal.shape[0]
        tokens = [self.fusion_token.expand(n, 1, -1)]
        for camera in self.cameras:
            compressed = self.visual_compressor(features[camera]).flatten(2).transpose(1, 2)  # [N, 84, d]
            tokens.append(
                self.visual_adapter(compressed) + getattr(self, f"visual_sensor_token_{CAMERA_SENSORS[camera]}")
            )
        tokens.append(goal)
        x = torch.cat(tokens, dim=1)
        mask = None
        if goal_mask is not None:
            visible = torch.ones(n, x.shape[1] - goal.shape[1], dtype=torch.bool, device=x.device)
            mask = torch.cat([visible, goal_mask], dim=1)[:, None, None, :]
        return self.fusion_xformer(x, mask)[:, 0]


class ActorHead(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d, NUM_ACTIONS)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)


class CriticHead(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, 1)
        nn.init.orthogonal_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h)[..., 0]


class FlareNetwork(nn.Module):
    """One FLaRe network (upstream's DinoLLAMATxNavActorCritic) over precomputed DINOv2 features."""

    def __init__(self, config: FlareConfig, t5: nn.Module) -> None:
        super().__init__()
        d = config.d_model
        self.config = config
        self.visual_encoder = FusionEncoder(config, t5)
        self.object_in_hand_embed = nn.Embedding(3, d)
        self.last_actions_embed = nn.Embedding(NUM_ACTIONS + 2, d, padding_idx=NUM_ACTIONS + 1)
        self.time_encoder = PositionalEncoder(d)
        self.decoder = TransformerDecoder(d, config.layers, config.heads, norm_eps=1e-5, multiple_of=256, output=True)
        self.actor = ActorHead(d)
        self.critic = CriticHead(d)

    def tokens(self, features, goal, prev_action, holding, step, goal_mask=None) -> torch.Tensor:
        """Per-step inputs with leading dims [B, T] (features[camera] [B, T, 384, 7, 12], goal [B, T, L, d] or
        [B, L, d] for the whole row, goal_mask [B, T, L] or [B, L]) -> step tokens [B, T, d]."""
        b, t = step.shape
        flat = {c: f.reshape(b * t, *f.shape[2:]) for c, f in features.items()}
        goal = goal if goal.dim() == 4 else goal[:, None].expand(b, t, *goal.shape[1:])
        if goal_mask is not None:
            goal_mask = goal_mask if goal_mask.dim() == 3 else goal_mask[:, None].expand(b, t, -1)
            goal_mask = goal_mask.reshape(b * t, -1)
        fused = self.visual_encoder(flat, goal.reshape(b * t, *goal.shape[2:]), goal_mask).reshape(b, t, -1)
        return (
            fused + self.last_actions_embed(prev_action) + self.object_in_hand_embed(holding) + self.time_encoder(step)
        )

    def sequence(self, batch: dict, keep_kv: list | None = None) -> torch.Tensor:
        """Decoder outputs [B, T, d] for whole sequences, each step attending to its own episode's past."""
        x = self.tokens(batch["features"], batch["goal"], batch["prev_action"], batch["holding"], batch["step"],
                        batch.get("goal_mask"))  # fmt: skip
        return self.decoder(x, SequenceAttention(batch["episode"], keep_kv))

    def step(self, features: dict, goal, prev_action, holding, cache: KVCache, goal_mask=None) -> torch.Tensor:
        """One step per row (inputs [B, ...], no time axis; goal [B, L, d]) against `cache` -> [B, d]."""
        features = {c: f[:, None] for c, f in features.items()}
        x = self.tokens(features, goal, prev_action[:, None], holding[:, None], cache.step[:, None], goal_mask)
        h = self.decoder(x, CachedStepAttention(cache))
        cache.advance()
        return h[:, 0]


class FlareActorCritic(FlareNetwork):
    """FLaRe's separate actor-critic (DinoLLAMATxNavActorCriticSeparate): this network acts, `critic_tsfm` (a
    full copy with its own T5, fusion and decoder) gives the value; DINOv2 features are computed once for both."""

    def __init__(self, config: FlareConfig, dinov2: str | nn.Module | None = None, t5: nn.Module | None = None) -> None:
        t5 = t5 if t5 is not None else load_t5_encoder(config.t5_path)
        super().__init__(config, t5)
        self.critic_tsfm = FlareNetwork(config, _copy_t5(t5))
        self.dinov2 = DinoFeatures(dinov2 if dinov2 is not None else config.dinov2_path)
        self.camera_shapes = {camera: FRAME for camera in config.cameras}

    def features(self, frames: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """frames[camera] [..., 3, 224, 384] -> DINOv2 features [..., 384, 7, 12] (frozen: no gradient)."""
        return self.dinov2.cameras(frames, self.config.cameras)

    def encode_goals(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 ids [B, L] -> the actor's and the critic's goal tokens [B, L, d]."""
        return self.visual_encoder.encode_goal(input_ids), self.critic_tsfm.visual_encoder.encode_goal(input_ids)

    def sequence(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, T, 20] and values [B, T]; batch["goal"] and batch["critic_goal"] from `encode_goals`."""
        logits = self.actor(super().sequence(batch))
        values = self.critic_tsfm.critic(self.critic_tsfm.sequence({**batch, "goal": batch["critic_goal"]}))
        return logits, values

    def new_cache(self, batch: int) -> KVCache:
        return KVCache(self.config, batch, next(self.parameters()).device)


def load_t5_encoder(path: str) -> nn.Module:
    """T5's encoder from a local Hugging Face directory (its config; the weights come from FLaRe's checkpoint)."""
    from transformers import T5Config, T5EncoderModel

    if not path:
        raise ValueError("the FLaRe model needs t5_path: a local t5-small directory (config.json, tokenizer.json)")
    return T5EncoderModel(T5Config.from_pretrained(path))


def _copy_t5(t5: nn.Module) -> nn.Module:
    copy = type(t5)(t5.config)
    copy.load_state_dict(t5.state_dict())
    return copy

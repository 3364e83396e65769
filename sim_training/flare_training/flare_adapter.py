"""FLaRe's model family behind the interface the trainer and evaluation drive (the embedded model's): PPO and
`evaluate_policy` run an imported FLaRe model unchanged.

What they see:
- `visual`: the frozen DINOv2, frames of every camera -> one flat feature row per step ([B, 2 x 384 x 7 x 12]),
  computed once where the envs step and stored by the rollout, as for the embedded model's frozen encoder;
- `actor` / `critic`: `step` (against a KVCache), `prime` and `sequence`, fed word ids as `goal`: here T5
  ids, padded with T5's pad id; T5 (frozen) encodes each distinct goal once and its states are remembered,
  the text adapter (trained) runs on every call, and the padding is masked out of the fusion, so a batched
  row computes what the robot computes for that goal alone;
- `new_caches`, `sequence`, `config` (its `max_goal_tokens` sets the goal ids' width).
The FLaRe network itself keeps upstream's parameter names (`net`); its checkpoints are FLaRe-family payloads.
"""

from __future__ import annotations

import torch
from torch import nn

from flare_training.flare_model import POOL, FlareActorCritic, FlareNetwork
from flare_training.model import prime_cache

MAX_REMEMBERED_GOALS = 4096  # T5 states kept per network (~64 KiB each)


class FlareVisual(nn.Module):
    """Frames of every camera -> DINOv2 features of all, flattened into one row per step."""

    def __init__(self, model: FlareActorCritic) -> None:
        super().__init__()
        self.dinov2 = model.dinov2
        self.cameras = model.config.cameras
        self.dim = model.dinov2.dim
        self.out_dim = len(self.cameras) * self.dim * POOL[0] * POOL[1]

    def forward(self, frames: dict[str, torch.Tensor]) -> torch.Tensor:
        features = self.dinov2.cameras(frames, self.cameras)
        return torch.cat([features[c].flatten(-3) for c in self.cameras], dim=-1)

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The inverse: [..., out_dim] -> per camera [..., 384, 7, 12]."""
        parts = flat.unflatten(-1, (len(self.cameras), self.dim, *POOL)).unbind(-4)
        return dict(zip(self.cameras, parts, strict=True))


class FlareSide:
    """One network of the pair (the actor or the critic) as the trainer calls it; `name` is the output's key."""

    def __init__(self, network: FlareNetwork, head: nn.Module, name: str, visual: FlareVisual, pad_id: int) -> None:
        self.network, self.head, self.name, self.visual, self.pad_id = network, head, name, visual, pad_id
        self._t5_states: dict[tuple[int, ...], torch.Tensor] = {}  # T5 is frozen: each goal's states, once

    def goal(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Goal ids [..., K] -> the text adapter's tokens [..., K, d] and the mask of real tokens [..., K]."""
        flat = ids.reshape(-1, ids.shape[-1])
        rows = [tuple(r) for r in flat.tolist()]
        missing = [r for r in dict.fromkeys(rows) if r not in self._t5_states]
        if missing:
            if len(self._t5_states) + len(missing) > MAX_REMEMBERED_GOALS:
                self._t5_states.clear()  # free-text goals: bounded memory, at worst T5 runs again
            encoder = self.network.visual_encoder.text_encoder
            batch = torch.tensor(missing, device=ids.device)
            with torch.no_grad():
                states = encoder(input_ids=batch, attention_mask=batch != self.pad_id).last_hidden_state
            self._t5_states.update(zip(missing, states, strict=True))
        states = torch.stack([self._t5_states[r] for r in rows]).reshape(*ids.shape, -1)
        return self.network.visual_encoder.text_adapter(states), ids != self.pad_id

    def _batch(self, batch: dict) -> dict:
        goal, mask = self.goal(batch["goal"])
        return {**batch, "features": self.visual.split(batch["visual"]), "goal": goal, "goal_mask": mask}

    def sequence(self, batch: dict, keep_kv: list | None = None) -> dict[str, torch.Tensor]:
        # FlareNetwork's own pass (FlareActorCritic.sequence returns the pair's logits and values instead)
        return {self.name: self.head(FlareNetwork.sequence(self.network, self._batch(batch), keep_kv))}

    def prime(self, batch: dict, lengths: torch.Tensor, cache) -> None:
        prime_cache(self, batch, lengths, cache)

    def step(self, inputs: dict, cache) -> dict[str, torch.Tensor]:
        goal, mask = self.goal(inputs["goal"])
        features = self.visual.split(inputs["visual"])
        h = self.network.step(features, goal, inputs["prev_action"], inputs["holding"], cache, mask)
        return {self.name: self.head(h)}


class FlareTrainable(nn.Module):
    """An imported FLaRe model as PPO and evaluation drive it; `net` is the FLaRe network (upstream's names)."""

    def __init__(self, net: FlareActorCritic, pad_id: int = 0) -> None:
        super().__init__()
        self.net = net
        self.config = net.config
        visual = FlareVisual(net)
        object.__setattr__(self, "visual", visual)  # shares net's DINOv2: not a second copy in the state dict
        value = _ValueHead(net.critic_tsfm.critic)
        self.actor = FlareSide(net, net.actor, "logits", visual, pad_id)
        self.critic = FlareSide(net.critic_tsfm, value, "value", visual, pad_id)

    def train(self, mode: bool = True) -> FlareTrainable:
        """Always evaluation mode: no dropout in the fusion, so a PPO ratio compares the policy that acted with
        itself (FLaRe keeps dropout on while acting and updating, which makes every ratio noisy)."""
        super().train(False)
        return self

    def new_caches(self, batch: int):
        return self.net.new_cache(batch), self.net.new_cache(batch)

    def sequence(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor.sequence(batch)["logits"], self.critic.sequence(batch)["value"][..., 0]


class _ValueHead(nn.Module):
    """The critic's value with a trailing axis of 1, as the embedded model's value head returns it."""

    def __init__(self, critic: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "critic", critic)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.critic(h)[..., None]

"""The frozen visual encoder as the rollout envs' observation hook: features computed where the envs step.

PPO never trains the visual encoder (FLaRe freezes DINOv2; our CNN is frozen the same way), so each frame's
features can be computed once, next to the simulator, by ONNX Runtime: in the env worker processes it runs in
parallel with the learner, and for the embedded CNN at batch 16 it is ~2.5x faster than torch eager (measured
1.1-1.3 ms against 3.0-3.2 ms, one thread). Updates use the features the rollout stored, so the policy that
acted and the policy the update divides by see the same numbers.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from flare_core.preprocessing import normalisation
from flare_training.inputs import ObservationAdapter

# What the learner reads of an observation once the features are in: the frames stay in the worker.
LEARNER_KEYS = ("goal", "prev_action", "holding")


class _CameraArgs(nn.Module):
    """VisualEncoder with one positional input per camera, as an ONNX graph needs."""

    def __init__(self, visual: nn.Module, cameras: tuple[str, ...]) -> None:
        super().__init__()
        self.visual, self.cameras = visual, cameras

    def forward(self, *frames: torch.Tensor) -> torch.Tensor:
        return self.visual(dict(zip(self.cameras, frames, strict=True)))


class FrozenVisualFeatures:
    """Batched observation -> {"visual": [B, visual_dim] float32, goal, prev_action, holding}.

    Picklable (the ONNX graph travels as bytes; each process opens its own session, on one thread, since the
    learner and the other workers need the remaining cores).
    """

    def __init__(self, visual: nn.Module, adapter: ObservationAdapter) -> None:
        from flare_training.export import export_graph  # export imports the model; keep this module light

        self.adapter = adapter
        cameras = tuple(c.name for c in adapter.cameras)
        example = tuple(torch.zeros(2, 3, h, w) for h, w in adapter.camera_shapes.values())
        visual = copy.deepcopy(visual).cpu()  # a GPU learner's encoder: the workers run on the CPU
        with tempfile.TemporaryDirectory() as tmp:
            path = export_graph(_CameraArgs(visual, cameras).eval(), example, Path(tmp) / "visual.onnx",
                                [f"images.{c}" for c in cameras], ["visual"])  # fmt: skip
            self.graph = path.read_bytes()
        self._session: ort.InferenceSession | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_session": None}

    def __call__(self, obs: dict) -> dict:
        if self._session is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(self.graph, options, providers=["CPUExecutionProvider"])
        frames = self.adapter.frames(obs)
        feeds = {f"images.{name}": tensor.numpy() for name, tensor in frames.items()}
        (visual,) = self._session.run(None, feeds)
        return {"visual": np.ascontiguousarray(visual, dtype=np.float32), **{k: obs[k] for k in LEARNER_KEYS}}


class VisualFrames:
    """The rollout envs' observation hook for an encoder that trains with the policy (`ppo --train-visual`).

    Each step keeps its frames resampled to the card's size but not yet normalised, uint8 (a quarter of the
    float32 bytes through the workers' pipes and in the rollout), every camera flattened into one vector under
    "visual" (the slot the frozen encoder's features take otherwise). Acting and priming the KV-cache normalise
    and encode them with the encoder's current weights (the old-log-prob pass reads those features), and every
    update pass encodes them again: each optimiser step changes the features. Picklable.
    """

    def __init__(self, adapter: ObservationAdapter) -> None:
        self.adapter = adapter
        self.shapes = {c.name: (c.preprocessing.height, c.preprocessing.width, 3) for c in adapter.cameras}
        self.sizes = [int(np.prod(shape)) for shape in self.shapes.values()]
        self.size = sum(self.sizes)
        self.normalisation = {c.name: tuple(map(torch.from_numpy, normalisation(c.preprocessing)))
                              for c in adapter.cameras}  # fmt: skip

    def __call__(self, obs: dict) -> dict:
        frames = self.adapter.resampled(obs)
        flat = np.concatenate([frames[name].reshape(len(frames[name]), -1) for name in self.shapes], axis=1)
        return {"visual": flat, **{k: obs[k] for k in LEARNER_KEYS}}

    def images(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 frames [N, size] -> per camera float [N, 3, h, w], normalised as `flare_core.preprocessing`
        does (the same float32 operations: the same numbers) and laid out channels-last, as the pixels are
        stored: a free view, and torch's CPU convolutions run ~35 % faster forward and backward on it than on
        channels-first frames (measured on the gridhouse cameras, 1,100 frames, 2 threads)."""
        images = {}
        for (name, shape), part in zip(self.shapes.items(), flat.split(self.sizes, dim=-1), strict=True):
            scale, offset = (t.to(flat.device) for t in self.normalisation[name])
            images[name] = part.reshape(-1, *shape).float().mul_(scale).add_(offset).permute(0, 3, 1, 2)
        return images

    def encode(self, visual: nn.Module, flat: torch.Tensor) -> torch.Tensor:
        """uint8 frames [..., size] -> the encoder's features [..., out_dim]."""
        return visual(self.images(flat.reshape(-1, self.size))).reshape(*flat.shape[:-1], visual.out_dim)

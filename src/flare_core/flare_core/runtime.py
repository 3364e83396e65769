"""ONNX Runtime policy: the robot-side way to run an exported policy, no torch.

`OnnxPolicy` loads `policy.onnx` + `model.json`, validates the card, cross-checks it against the graph
(action count, cache layout, image sizes, goal length) and refuses any mismatch with a message saying what
to fix. It keeps the KV-cache of the current episode, resets it when the goal changes, masks the logits with
the embodiment's valid actions and chooses greedily or by sampling.

Episodes longer than the cache's `max_context`: the policy keeps attending to the most recent
`max_context - 1` steps plus the current one (a sliding window) and the time input saturates at
`max_context - 1`, exactly as training clamps it. Nothing is refused; `StepResult.context_full` says when
the window slides, so a node can log it. Steps that left the window still leave a faint trace through the
deeper layers' cached states (computed when those steps were in view), as in any streaming KV-cache.

Cache layouts (the card's `cache.layout`): "concat" passes the past in and takes past + 1 out each step;
"shared" binds one fixed buffer per tensor as both input and output, so the graph writes the new step in
place (ONNX Runtime's GroupQueryAttention, CPU execution provider) and nothing is copied per step. Both give
the same decisions, the sliding window included.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flare_core.actions import ACTIONS, NO_PREVIOUS_ACTION, action_by_index, action_by_name
from flare_core.embodiments import get_embodiment
from flare_core.goal_tokenizer import load_goal_tokenizer
from flare_core.masking import select_action
from flare_core.model_card import ModelCard, load_model_card
from flare_core.preprocessing import preprocess

POLICY_FILE = "policy.onnx"


class PolicyLoadError(RuntimeError):
    """A model directory that cannot be run: missing or corrupt file, or a graph that contradicts its card."""


@dataclass(frozen=True)
class StepResult:
    action: int
    name: str
    logits: np.ndarray  # raw, before masking
    latency_ms: float  # preprocessing + inference + selection
    context_full: bool


def available_providers(prefer_gpu: bool = True) -> list[str]:
    """CUDA where onnxruntime-gpu and a GPU are present, else CPU."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    wanted = (["CUDAExecutionProvider"] if prefer_gpu else []) + ["CPUExecutionProvider"]
    return [p for p in wanted if p in have]


class OnnxPolicy:
    def __init__(
        self,
        model_dir: str | Path,
        embodiment: str | None = None,
        greedy: bool = True,
        providers: list[str] | None = None,
        seed: int = 0,
        robot: str | None = None,
    ) -> None:
        import onnxruntime as ort

        model_dir = Path(model_dir)
        self.card: ModelCard = load_model_card(model_dir)
        path = model_dir / POLICY_FILE
        if not path.is_file():
            raise PolicyLoadError(f"{path}: policy graph not found; export one with `python -m flare_training export`")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        providers = providers or available_providers()
        if self.card.cache.layout == "shared":
            providers = ["CPUExecutionProvider"]  # the in-place cache is bound to host memory
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # onnxruntime raises several types for unreadable models
            raise PolicyLoadError(f"{path}: not a loadable ONNX model ({err}); re-export or re-copy it") from None
        name = embodiment or self.card.embodiments[0]
        if name not in self.card.embodiments:
            raise PolicyLoadError(
                f"{model_dir}: the card lists embodiments {list(self.card.embodiments)}, not {name!r}; "
                "this policy was not trained for that robot"
            )
        self.embodiment = get_embodiment(name)
        # The robot may be able to do less than the policy was trained for (FLaRe's embodiment transfer):
        # actions either side cannot do are masked at the logits.
        self.robot = get_embodiment(robot) if robot else self.embodiment
        self.mask = self.embodiment.mask & self.robot.mask
        if not self.mask[action_by_name("end").index]:
            raise PolicyLoadError(f"embodiments {name!r} and {self.robot.name!r} share no `end` action")
        try:
            self.tokenizer = load_goal_tokenizer(self.card.goal_tokenizer, model_dir)
        except (OSError, ValueError) as err:
            raise PolicyLoadError(str(err)) from None
        self.goal_session = self._goal_session(model_dir, options) if self.card.goal_encoder else None
        self.greedy = greedy
        self.rng = np.random.default_rng(seed)
        self._check_graph(path)
        self.goal: str | None = None

    def _goal_session(self, model_dir: Path, options):
        """The goal-encoder graph (run once per goal), checked against the card."""
        import onnxruntime as ort

        spec = self.card.goal_encoder
        path = model_dir / spec.graph
        if not path.is_file():
            raise PolicyLoadError(f"{path}: the card's goal encoder graph is missing; re-export the model")
        try:
            session = ort.InferenceSession(str(path), options, providers=available_providers())
        except Exception as err:  # onnxruntime raises several types for unreadable models
            raise PolicyLoadError(f"{path}: not a loadable ONNX model ({err}); re-export or re-copy it") from None
        inputs = {i.name for i in session.get_inputs()}
        outputs = {o.name: o.shape for o in session.get_outputs()}
        if inputs != {"input_ids"} or outputs.get("goal_features", [None])[-1] != spec.dim:
            raise PolicyLoadError(
                f"{path}: expected input_ids -> goal_features [..., {spec.dim}], found inputs {sorted(inputs)}, "
                f"outputs {outputs}; re-export the model"
            )
        return session

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def _check_graph(self, path: Path) -> None:
        card = self.card
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        problems = []
        for cam in card.cameras:
            shape = inputs.get(f"images.{cam.name}")
            want = [3, cam.preprocessing.height, cam.preprocessing.width]
            if shape is None:
                problems.append(f"the graph has no input images.{cam.name} for the card's camera {cam.name!r}")
            elif list(shape[1:]) != want:
                problems.append(f"images.{cam.name} is {shape[1:]} in the graph but the card preprocesses to {want}")
        if card.goal_encoder is not None:
            goal = inputs.get("goal_features")
            if goal is None or goal[-1] != card.goal_encoder.dim:
                problems.append(f"goal_features {goal} does not take the encoder's {card.goal_encoder.dim} features")
        else:
            goal = inputs.get("goal_tokens")
            if goal is None or goal[1] != card.goal_tokenizer.max_tokens:
                problems.append(f"goal_tokens {goal} does not take the card's {card.goal_tokenizer.max_tokens} tokens")
        layers = sum(1 for n in inputs if n.startswith("past_key_values.") and n.endswith(".key"))
        if layers != card.cache.layers:
            problems.append(f"the graph has {layers} cache layers, the card says {card.cache.layers}")
        want_kv = [card.cache.heads, card.cache.head_dim]
        shared = card.cache.layout == "shared"
        cache_type = {"float32": "tensor(float)", "int8": "tensor(int8)"}[card.cache.dtype]
        types = {i.name: i.type for i in self.session.get_inputs()}
        for i in range(card.cache.layers):
            for kind in ("key", "value"):
                shape = inputs.get(f"past_key_values.{i}.{kind}")
                if shape is None or f"present.{i}.{kind}" not in outputs:
                    problems.append(f"cache tensors for layer {i} ({kind}) are missing")
                elif [shape[1], shape[3]] != want_kv:
                    problems.append(
                        f"past_key_values.{i}.{kind} has heads x head_dim {shape[1]} x {shape[3]}, "
                        f"the card says {want_kv[0]} x {want_kv[1]}"
                    )
                elif types[f"past_key_values.{i}.{kind}"] != cache_type:
                    problems.append(
                        f"past_key_values.{i}.{kind} is {types[f'past_key_values.{i}.{kind}']}, "
                        f"the card's cache.dtype says {card.cache.dtype}"
                    )
                elif shared and shape[2] != card.cache.max_context:
                    problems.append(
                        f"past_key_values.{i}.{kind} has length {shape[2]}, but the card's 'shared' layout needs "
                        f"a fixed buffer of max_context = {card.cache.max_context}"
                    )
                elif not shared and isinstance(shape[2], int):
                    problems.append(
                        f"past_key_values.{i}.{kind} is a fixed buffer of {shape[2]}, but the card's 'concat' "
                        "layout needs a dynamic past length (is the card's cache.layout 'shared'?)"
                    )
        logits = outputs.get("logits")
        if logits is None or logits[-1] != len(card.action_names):
            problems.append(f"logits {logits} do not cover the card's {len(card.action_names)} actions")
        if problems:
            listing = "\n  - ".join(problems)
            raise PolicyLoadError(f"{path}: graph and model card disagree; re-export the model:\n  - {listing}")
        self._cache_names = [f"{i}.{k}" for i in range(card.cache.layers) for k in ("key", "value")]
        self._logits = np.zeros((1, len(card.action_names)), dtype=np.float32)

    # -- episode -----------------------------------------------------------------------------------------
    def check_goal(self, goal: str) -> str:
        """Why this model would misread `goal` (unknown words, too long); empty when it reads it as written."""
        return self.tokenizer.problems(goal)

    def reset(self, goal: str) -> None:
        """Start an episode for `goal`: empty cache, step 0, no previous action."""
        c = self.card.cache
        self.goal = goal
        tokens = self.tokenizer.encode(goal)[None]
        if self.goal_session is None:
            self._goal_input = {"goal_tokens": tokens}
        else:  # encoded once per goal; every step of the episode reads the same features
            self._goal_input = {"goal_features": self.goal_session.run(None, {"input_ids": tokens})[0]}
        length = c.max_context if c.layout == "shared" else 0
        dtype = np.dtype(c.dtype)
        self._cache = {n: np.zeros((1, c.heads, length, c.head_dim), dtype=dtype) for n in self._cache_names}
        self._filled = 0  # "shared": entries of the buffers in use (the rest is never attended to)
        if c.layout == "shared":
            self._binding = self._bind_buffers()
        self.step_index = 0
        self.prev_action = NO_PREVIOUS_ACTION

    @property
    def cache_length(self) -> int:
        """Past steps the cache holds (what the next step attends to besides itself)."""
        if self.card.cache.layout == "shared":
            return self._filled
        return self._cache[self._cache_names[0]].shape[2]

    def executed(self, action: int) -> None:
        """The action that was actually executed after the last `act` (open-loop replay of a recorded run
        feeds the recorded one, so the next step sees the history that really happened)."""
        self.prev_action = action_by_index(action).index

    def act(self, frames: dict[str, np.ndarray], holding: bool, goal: str | None = None) -> StepResult:
        """One decision from raw RGB frames (uint8 H x W x 3 per camera). A new goal resets the episode."""
        start = time.perf_counter()
        if goal is not None and goal != self.goal:
            self.reset(goal)
        if self.goal is None:
            raise RuntimeError("no goal: call reset(goal) or pass goal= before act()")
        feed = {}
        for cam in self.card.cameras:
            if cam.name not in frames:
                raise KeyError(
                    f"no frame for camera {cam.name!r}; the policy needs {[c.name for c in self.card.cameras]}"
                )
            feed[f"images.{cam.name}"] = preprocess(frames[cam.name], cam.preprocessing, cam.name)[None]
        max_context = self.card.cache.max_context
        feed.update(self._goal_input)
        feed["prev_action"] = np.array([self.prev_action], dtype=np.int64)
        feed["holding"] = np.array([int(holding)], dtype=np.int64)
        feed["step"] = np.array([min(self.step_index, max_context - 1)], dtype=np.int64)
        if self.card.cache.layout == "shared":
            logits, context_full = self._run_in_place(feed)
        else:
            logits, context_full = self._run_concat(feed)
        action = select_action(logits[0], self.mask, greedy=self.greedy, rng=self.rng)
        self.prev_action = action  # replay overrides it with what was executed (`executed`)
        self.step_index += 1
        return StepResult(action, ACTIONS[action].name, logits[0], (time.perf_counter() - start) * 1000, context_full)

    def _run_concat(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, bool]:
        for name in self._cache_names:
            feed[f"past_key_values.{name}"] = self._cache[name]
        logits, *presents = self.session.run(None, feed)
        max_context = self.card.cache.max_context
        context_full = presents[0].shape[2] >= max_context
        keep = max_context - 1  # room for the next step
        self._cache = {
            n: p[:, :, -keep:] if context_full else p for n, p in zip(self._cache_names, presents, strict=True)
        }
        return logits, context_full

    def _bind_buffers(self):
        """Each cache buffer bound as both past input and present output (the same memory), and the logits."""
        binding = self.session.io_binding()
        for name, buffer in self._cache.items():
            shape, dtype = list(buffer.shape), buffer.dtype.type
            binding.bind_input(f"past_key_values.{name}", "cpu", 0, dtype, shape, buffer.ctypes.data)
            binding.bind_output(f"present.{name}", "cpu", 0, dtype, shape, buffer.ctypes.data)
        binding.bind_output("logits", "cpu", 0, np.float32, list(self._logits.shape), self._logits.ctypes.data)
        return binding

    def _run_in_place(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, bool]:
        """The graph writes this step's keys and values into the bound buffers at row `step` (== filled)."""
        for name, value in feed.items():
            self._binding.bind_cpu_input(name, value)
        self.session.run_with_iobinding(self._binding)
        self._filled += 1
        context_full = self._filled >= self.card.cache.max_context
        if context_full:  # slide the window: drop the oldest step, as the concat layout does
            for buffer in self._cache.values():
                buffer[:, :, :-1] = buffer[:, :, 1:].copy()
            self._filled -= 1
        return self._logits.copy(), context_full

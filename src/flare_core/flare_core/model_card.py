"""The model card (`model.json` beside `policy.onnx`): what a loader must know and check about a policy.

Every loader validates the card with `ModelCard.from_dict`/`load_model_card`, which refuses a bad card with
one error listing every problem by its path (`cache.heads: must be a positive integer, got -1`), so an
operator can fix the card (or re-export) without guessing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flare_core.actions import ACTION_NAMES
from flare_core.embodiments import EMBODIMENTS
from flare_core.preprocessing import PreprocessConfig

SCHEMA_VERSION = 1
CARD_FILENAME = "model.json"


class ModelCardError(ValueError):
    """A model card that is missing, unreadable or inconsistent; the message lists every problem."""


@dataclass(frozen=True)
class CameraSpec:
    name: str
    preprocessing: PreprocessConfig


@dataclass(frozen=True)
class GoalTokenizerSpec:
    """How a goal text becomes token ids, one of two types:
    - "word": lower-cased words split on spaces and commas, ids from `vocab` (0 pad, 1 unknown), padded to
      `max_tokens` (the embedded model);
    - "tokenizers": a Hugging Face `tokenizers` file in the model directory (`file`, e.g. T5's tokenizer.json),
      unpadded ids, at most `max_tokens` of them read (FLaRe's T5 goal encoder).
    """

    type: str
    vocab: tuple[str, ...]
    max_tokens: int
    file: str = ""


@dataclass(frozen=True)
class GoalEncoderSpec:
    """A goal-encoder graph run once per goal (FLaRe: T5's encoder and the text adapter): `input_ids` int64
    [1, L] -> `goal_features` float32 [1, L, dim], which the step graph takes in place of `goal_tokens`."""

    graph: str
    dim: int


@dataclass(frozen=True)
class CacheSpec:
    """Transformer KV-cache: per layer a key and a value of batch x heads x length x head_dim, in one of two layouts.

    - "concat": past_len entries in, past_len + 1 out (the Hugging Face convention; past_len 0 at a start);
    - "shared": a fixed max_context buffer in and out, which the runtime binds to the same memory so the graph
      writes the new step in place (ONNX Runtime's GroupQueryAttention) instead of copying the whole past
      every step; the `step` input doubles as the number of filled entries.
    """

    layers: int
    heads: int
    head_dim: int
    max_context: int
    layout: str = "concat"
    dtype: str = "float32"  # "int8": the shared buffers hold keys/values quantized with scales inside the graph


GOAL_TOKENIZER_TYPES = ("word", "tokenizers")
CACHE_LAYOUTS = ("concat", "shared")
CACHE_DTYPES = ("float32", "int8")
WEIGHT_TYPES = ("float32", "int8")  # int8: weights quantized after export (ONNX Runtime dynamic quantization)


@dataclass(frozen=True)
class Stage:
    """A run the policy was trained from: where it was, what it was (perception, bc, ppo, grpo; "missing" where
    the run was gone at export), its own env steps, the task families it trained on, its demonstrations."""

    run: str
    kind: str
    env_steps: int = 0
    tasks: tuple[str, ...] = ()
    demos: int = 0


@dataclass(frozen=True)
class Provenance:
    env: str
    tasks: tuple[str, ...]
    env_steps: int  # the exported run's own; earlier runs' are in `lineage`
    success: dict[str, float] = field(default_factory=dict)
    command: str = ""
    lineage: tuple[Stage, ...] = ()  # the runs it was trained from, oldest first


@dataclass(frozen=True)
class ModelCard:
    name: str
    action_names: tuple[str, ...]
    embodiments: tuple[str, ...]
    cameras: tuple[CameraSpec, ...]
    goal_tokenizer: GoalTokenizerSpec
    cache: CacheSpec
    opset: int
    provenance: Provenance
    weights: str = "float32"
    goal_encoder: GoalEncoderSpec | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cameras"] = [{"name": c.name, "preprocessing": c.preprocessing.to_dict()} for c in self.cameras]
        if self.goal_encoder is None:  # the word tokenizer's cards: no goal graph, no tokenizer file
            del d["goal_encoder"]
            del d["goal_tokenizer"]["file"]
        return _lists(d)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CARD_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: object, source: str = "model card") -> ModelCard:
        return _Validator(source).card(data)


def load_model_card(path: str | Path) -> ModelCard:
    """Read and validate `model.json` (or the card inside a model directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILENAME
    if not path.is_file():
        raise ModelCardError(
            f"{path}: model card not found; every model directory needs a {CARD_FILENAME} beside policy.onnx"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelCardError(f"{path}: not valid JSON ({err}); re-export the model to regenerate its card") from None
    return ModelCard.from_dict(data, source=str(path))


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


class _Validator:
    """Walks a card dict, collecting every problem before raising once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def bad(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def section(self, data: dict, key: str) -> dict:
        value = data.get(key)
        if not isinstance(value, dict):
            self.bad(key, "missing" if value is None else f"must be an object, got {type(value).__name__}")
            return {}
        return value

    def positive_int(self, data: dict, key: str, path: str) -> int:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.bad(path, "missing" if value is None else f"must be a positive integer, got {value!r}")
            return 0
        return value

    def string(self, data: dict, key: str, path: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            self.bad(path, "missing" if value is None else f"must be a non-empty string, got {value!r}")
            return ""
        return value

    def string_list(self, data: dict, key: str, path: str) -> tuple[str, ...]:
        value = data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.bad(path, "missing" if value is None else "must be a list of strings")
            return ()
        return tuple(value)

    def card(self, data: object) -> ModelCard:
        if not isinstance(data, dict):
            raise ModelCardError(f"{self.source}: must be a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            self.bad("schema_version", f"this loader reads version {SCHEMA_VERSION}, the card says {version!r}")
        unknown = set(data) - {f for f in ModelCard.__dataclass_fields__}
        if unknown:
            self.bad("(top level)", f"unknown keys {sorted(unknown)}")
        name = self.string(data, "name", "name")

        actions = self.string_list(data, "action_names", "action_names")
        if actions and actions != ACTION_NAMES:
            self.bad(
                "action_names",
                f"the card has {len(actions)} actions {list(actions)}, this stack uses the {len(ACTION_NAMES)}-action "
                f"vocabulary {list(ACTION_NAMES)}; the policy's outputs would mean different motions",
            )
        embodiments = self.string_list(data, "embodiments", "embodiments")
        for e in embodiments:
            if e not in EMBODIMENTS:
                self.bad("embodiments", f"unknown embodiment {e!r}; known: {', '.join(EMBODIMENTS)}")
        if not embodiments and "embodiments" in data:
            self.bad("embodiments", "must name at least one embodiment")

        cameras = self.cameras(data.get("cameras"))
        tokenizer = self.tokenizer(self.section(data, "goal_tokenizer"))
        c = self.section(data, "cache")
        cache = CacheSpec(
            *(self.positive_int(c, k, f"cache.{k}") for k in ("layers", "heads", "head_dim", "max_context")),
            layout=self.choice(c, "layout", "cache.layout", CACHE_LAYOUTS),
            dtype=self.choice(c, "dtype", "cache.dtype", CACHE_DTYPES),
        )
        if cache.dtype != "float32" and cache.layout != "shared":
            self.bad("cache.dtype", f"an {cache.dtype} cache needs the 'shared' layout, not {cache.layout!r}")
        opset = self.positive_int(data, "opset", "opset")
        provenance = self.provenance(self.section(data, "provenance"))
        weights = self.choice(data, "weights", "weights", WEIGHT_TYPES)
        goal_encoder = self.goal_encoder(data.get("goal_encoder"))
        if (tokenizer.type == "tokenizers") != (goal_encoder is not None):
            self.bad(
                "goal_encoder", "a 'tokenizers' goal tokenizer and a goal encoder graph come together (or neither)"
            )

        if self.problems:
            listing = "\n  - ".join(self.problems)
            raise ModelCardError(f"{self.source}: invalid model card ({len(self.problems)} problem(s)):\n  - {listing}")
        return ModelCard(
            name, actions, embodiments, cameras, tokenizer, cache, opset, provenance, weights, goal_encoder, version
        )

    def choice(self, data: dict, key: str, path: str, allowed: tuple[str, ...]) -> str:
        """An optional field with a fixed set of values; absent means the first (cards written before it)."""
        value = data.get(key, allowed[0])
        if value not in allowed:
            self.bad(path, f"must be one of {', '.join(allowed)}, got {value!r}")
            return allowed[0]
        return value

    def cameras(self, value: object) -> tuple[CameraSpec, ...]:
        if not isinstance(value, list) or not value:
            self.bad("cameras", "must be a non-empty list of {name, preprocessing}")
            return ()
        specs = []
        for i, cam in enumerate(value):
            if not isinstance(cam, dict):
                self.bad(f"cameras[{i}]", "must be an object")
                continue
            cam_name = self.string(cam, "name", f"cameras[{i}].name")
            pre = cam.get("preprocessing")
            try:
                if not isinstance(pre, dict):
                    raise ValueError("missing" if pre is None else "must be an object")
                specs.append(CameraSpec(cam_name, PreprocessConfig.from_dict(pre)))
            except (TypeError, ValueError) as err:
                self.bad(f"cameras[{i}].preprocessing", str(err))
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            self.bad("cameras", f"camera names must be unique, got {names}")
        return tuple(specs)

    def tokenizer(self, t: dict) -> GoalTokenizerSpec:
        kind = self.choice(t, "type", "goal_tokenizer.type", GOAL_TOKENIZER_TYPES) if t else "word"
        max_tokens = self.positive_int(t, "max_tokens", "goal_tokenizer.max_tokens")
        if kind == "tokenizers":
            return GoalTokenizerSpec(kind, (), max_tokens, self.string(t, "file", "goal_tokenizer.file"))
        vocab = self.string_list(t, "vocab", "goal_tokenizer.vocab")
        if vocab and vocab[:2] != ("<pad>", "<unk>"):
            self.bad("goal_tokenizer.vocab", "must start with '<pad>', '<unk>'")
        if len(set(vocab)) != len(vocab):
            self.bad("goal_tokenizer.vocab", "has duplicate words")
        return GoalTokenizerSpec(kind, vocab, max_tokens)

    def goal_encoder(self, g: object) -> GoalEncoderSpec | None:
        if g is None:
            return None
        if not isinstance(g, dict):
            self.bad("goal_encoder", f"must be an object {{graph, dim}}, got {type(g).__name__}")
            return None
        return GoalEncoderSpec(
            self.string(g, "graph", "goal_encoder.graph"), self.positive_int(g, "dim", "goal_encoder.dim")
        )

    def count(self, data: dict, key: str, path: str, default: int | None = None) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.bad(path, f"must be a non-negative integer, got {value!r}")
            return 0
        return value

    def lineage(self, stages: object) -> tuple[Stage, ...]:
        if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
            self.bad("provenance.lineage", "must be a list of {run, kind, env_steps, tasks, demos} objects")
            return ()
        return tuple(
            Stage(
                self.string(s, "run", f"provenance.lineage[{i}].run"),
                self.string(s, "kind", f"provenance.lineage[{i}].kind"),
                self.count(s, "env_steps", f"provenance.lineage[{i}].env_steps", 0),
                self.string_list({"tasks": [], **s}, "tasks", f"provenance.lineage[{i}].tasks"),
                self.count(s, "demos", f"provenance.lineage[{i}].demos", 0),
            )  # fmt: skip
            for i, s in enumerate(stages)
        )

    def provenance(self, p: dict) -> Provenance:
        env = self.string(p, "env", "provenance.env")
        tasks = self.string_list(p, "tasks", "provenance.tasks")
        steps = self.count(p, "env_steps", "provenance.env_steps")
        success = p.get("success", {})
        if not isinstance(success, dict) or not all(
            isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in success.values()
        ):
            self.bad("provenance.success", "must map task family -> success rate in [0, 1]")
            success = {}
        command = p.get("command", "")
        if not isinstance(command, str):
            self.bad("provenance.command", "must be a string")
            command = ""
        return Provenance(env, tasks, steps, dict(success), command, self.lineage(p.get("lineage", [])))

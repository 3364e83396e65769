"""Word-level goal tokenizer. Its vocabulary is stored in the model card, so the robot tokenises goals
exactly as training did, with no extra files or libraries."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from flare_core.model_card import GoalTokenizerSpec
from flare_core.protocol import clip_text

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+|,")
MAX_LISTED = 8  # unknown words named in a message; the rest are counted


def goal_words(text: str) -> list[str]:
    """Lower-cased words and commas ("Go to the red ball, then..." -> go to the red ball , then ...)."""
    return _WORD.findall(text.lower())


class GoalTokenizer:
    """Maps a goal text to a fixed-length int64 vector: word ids, then padding (0); unknown words -> 1."""

    def __init__(self, vocab: Sequence[str], max_tokens: int) -> None:
        if list(vocab[:2]) != [PAD, UNK]:
            raise ValueError(f"vocabulary must start with {PAD!r}, {UNK!r}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.vocab = tuple(vocab)
        self.max_tokens = max_tokens
        self._ids = {w: i for i, w in enumerate(self.vocab)}

    @classmethod
    def from_words(cls, words: Iterable[str], max_tokens: int) -> GoalTokenizer:
        return cls((PAD, UNK, *sorted(set(words) - {PAD, UNK})), max_tokens)

    @classmethod
    def from_spec(cls, spec: GoalTokenizerSpec) -> GoalTokenizer:
        return cls(spec.vocab, spec.max_tokens)

    def spec(self) -> GoalTokenizerSpec:
        return GoalTokenizerSpec("word", self.vocab, self.max_tokens)

    def __len__(self) -> int:
        return len(self.vocab)

    def problems(self, text: str) -> str:
        """Why the model would misread `text` (empty when it reads it as written): words outside its
        vocabulary, which it sees as one `<unk>`, and words past `max_tokens`, which it never sees."""
        words = goal_words(text)
        unknown = list(dict.fromkeys(w for w in words if w not in self._ids))
        found = []
        if unknown:
            shown = ", ".join(repr(clip_text(w, 24)) for w in unknown[:MAX_LISTED])
            more = f" and {len(unknown) - MAX_LISTED} more" if len(unknown) > MAX_LISTED else ""
            found.append(f"words the model does not know: {shown}{more}")
        if len(words) > self.max_tokens:
            found.append(f"{len(words)} words where the model reads at most {self.max_tokens}")
        return "; ".join(found)

    def encode(self, text: str) -> np.ndarray:
        ids = [self._ids.get(w, 1) for w in goal_words(text)][: self.max_tokens]
        out = np.zeros(self.max_tokens, dtype=np.int64)
        out[: len(ids)] = ids
        return out

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.encode(t) for t in texts]) if texts else np.zeros((0, self.max_tokens), np.int64)

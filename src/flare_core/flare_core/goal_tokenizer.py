"""Word-level goal tokenizer. Its vocabulary is stored in the model card, so the robot tokenises goals
exactly as training did, with no extra files or libraries."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

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


class SubwordGoalTokenizer:
    """A Hugging Face `tokenizers` tokenizer (T5's tokenizer.json for FLaRe): the same ids as the training-side
    AutoTokenizer, end-of-sequence token included, unpadded; at most `max_tokens` are read."""

    def __init__(self, tokenizer, max_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        vocab = tokenizer.get_vocab()
        self.unknown_id = vocab.get("<unk>", -1)
        self.pad_id = vocab.get("<pad>", 0)

    @classmethod
    def from_file(cls, path: str | Path, max_tokens: int) -> SubwordGoalTokenizer:
        from tokenizers import Tokenizer  # lazily: only models with a goal encoder need it

        try:
            return cls(Tokenizer.from_file(str(path)), max_tokens)
        except Exception as err:  # tokenizers raises its own exception type for unreadable files
            raise ValueError(f"{path}: not a Hugging Face tokenizer file ({err}); re-export the model") from None

    @classmethod
    def from_json(cls, text: str, max_tokens: int) -> SubwordGoalTokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(text), max_tokens)

    def problems(self, text: str) -> str:
        """Why the model would misread `text`: pieces the tokenizer cannot map (<unk>), or more tokens than read."""
        encoding = self.tokenizer.encode(text)
        found = []
        unknown = [t for t, i in zip(encoding.tokens, encoding.ids, strict=True) if i == self.unknown_id]
        if unknown:
            shown = ", ".join(repr(clip_text(t, 24)) for t in dict.fromkeys(unknown[:MAX_LISTED]))
            found.append(f"text the tokenizer cannot represent: {shown}")
        if len(encoding.ids) > self.max_tokens:
            found.append(f"{len(encoding.ids)} tokens where the model reads at most {self.max_tokens}")
        return "; ".join(found)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(text).ids[: self.max_tokens], dtype=np.int64)

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """[B, max_tokens] ids, padded with the pad id (training batches; the padding is masked)."""
        out = np.full((len(texts), self.max_tokens), self.pad_id, dtype=np.int64)
        for row, text in zip(out, texts, strict=True):
            ids = self.encode(text)
            row[: len(ids)] = ids
        return out


def load_goal_tokenizer(spec: GoalTokenizerSpec, model_dir: str | Path) -> GoalTokenizer | SubwordGoalTokenizer:
    """The tokenizer a model card names, read from its model directory where it is a file."""
    if spec.type == "tokenizers":
        path = Path(model_dir) / spec.file
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the model card's goal tokenizer file is missing; re-export the model")
        return SubwordGoalTokenizer.from_file(path, spec.max_tokens)
    return GoalTokenizer.from_spec(spec)

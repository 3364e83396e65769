"""ProcTHOR-Objaverse houses as SPOC/FLaRe read them: one house JSON per line of `{split}.jsonl.gz`, the line
number is the house index (SPOC `utils/data_utils.py:LazyJsonHouses`). Lines are kept as bytes and parsed on use.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from flare_training.thor.controller import ThorSetupError

# Our split names -> the upstream files (SPOC trains on train, evaluates on val).
SPLIT_FILES = {"train": "train.jsonl.gz", "eval": "val.jsonl.gz"}
HOUSES_URL = "https://pub-5932b61898254419952f5b13d42d82ab.r2.dev/procthor_objaverse%2F2023_07_28%2F{subset}.jsonl.gz"
DOWNLOAD_HINT = (
    "download them into DIR/houses_2023_07_28 (as SPOC's scripts/download_objaverse_houses.py does): "
    "curl -L -o DIR/houses_2023_07_28/{file} " + HOUSES_URL
)


class HouseSet:
    """The houses of one split; `houses[i]` is a fresh dict each time (the controller writes into it)."""

    def __init__(self, directory: str | Path, split: str) -> None:
        if split not in SPLIT_FILES:
            raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLIT_FILES)}")
        self.path = _find(Path(directory), SPLIT_FILES[split])
        try:
            with gzip.open(self.path, "rb") as f:
                self._lines = [line for line in f if line.strip()]
        except (OSError, EOFError) as error:
            raise ThorSetupError(f"{self.path} is not a readable jsonl.gz file ({error}); download it again") from error
        if not self._lines:
            raise ThorSetupError(f"{self.path} holds no houses; download it again")

    def __len__(self) -> int:
        return len(self._lines)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self._lines):
            raise IndexError(f"house {index} is outside {self.path} (0..{len(self._lines) - 1})")
        try:
            house = json.loads(self._lines[index])
        except json.JSONDecodeError as error:
            raise ThorSetupError(f"{self.path} line {index + 1} is not a house JSON ({error})") from error
        missing = [k for k in ("rooms", "objects", "metadata") if k not in house]
        if missing:
            raise ThorSetupError(f"{self.path} line {index + 1} is not a ProcTHOR house: no {', '.join(missing)}")
        return house


def _find(directory: Path, file: str) -> Path:
    """`DIR/file` or `DIR/houses_2023_07_28/file`; a wrong path names both and how to get the houses."""
    if not str(directory) or str(directory) == ".":
        raise ThorSetupError(f"--thor-houses is empty: give the directory of the ProcTHOR-Objaverse houses; "
                             f"{DOWNLOAD_HINT.format(file=file, subset=file.split('.')[0])}")  # fmt: skip
    for candidate in (directory / file, directory / "houses_2023_07_28" / file):
        if candidate.is_file():
            return candidate
    raise ThorSetupError(
        f"no {file} in {directory} or {directory / 'houses_2023_07_28'}; "
        + DOWNLOAD_HINT.format(file=file, subset=file.split(".")[0])
    )

"""Do a frozen perception encoder's features tell object colours apart? A linear probe (one linear layer, as
the per-cell heads `flare_training perception` trains) on the navigation camera's feature vectors of cells
holding a key, ball or box, from random walks in training houses; prints test accuracy, the colour confusion
matrix and accuracy per row of the 7 x 7 view (row 6 holds the robot). `eval --why` names the colours a policy
confuses; this says whether the features it reads could tell them apart.

    .venv/bin/python sim_training/probe_colours.py [--run runs/perception] [--frames 6000]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

from flare_training.checkpoint import load_checkpoint
from flare_training.perception import collect_frames

VIEW = 7  # cells per row of the navigation camera's view


def object_cells(run: str, frames: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Feature vectors of the cells showing an object, their colour codes and their cell indices."""
    model, adapter, _ = load_checkpoint(run)
    data = collect_frames(frames, seed)
    images = adapter.frames({k: data[k] for k in ("nav_rgb", "manip_rgb")})["nav"]
    with torch.no_grad():
        fmap = torch.cat([model.visual.encoders["nav"].feature_map(images[i : i + 500]) for i in range(0, frames, 500)])
    cells = torch.from_numpy(data["nav_cells"].reshape(frames, -1, 3).astype(np.int64))
    objects = torch.isin(cells[..., 0], torch.tensor([OBJECT_TO_IDX[t] for t in ("key", "ball", "box")]))
    frame, cell = objects.nonzero(as_tuple=True)
    return fmap[frame, :, cell], cells[frame, cell, 1], cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/perception", help="checkpoint whose frozen visual encoder to probe")
    parser.add_argument("--frames", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    x, y, cell = object_cells(args.run, args.frames, args.seed)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = order[: int(0.8 * len(y))], order[int(0.8 * len(y)) :]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    probe = torch.nn.Linear(x.shape[1], len(COLOR_TO_IDX))
    optimizer = torch.optim.Adam(probe.parameters(), 1e-2)
    for _ in range(500):
        loss = F.cross_entropy(probe((x[train] - mean) / std), y[train])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    predicted = probe((x[test] - mean) / std).argmax(1)
    right = predicted == y[test]
    print(f"object cells {len(y)} ({len(test)} held out), colour accuracy {right.float().mean():.3f}")
    names = sorted(COLOR_TO_IDX, key=COLOR_TO_IDX.get)
    confusion = torch.zeros(len(names), len(names), dtype=torch.long)
    for t, p in zip(y[test].tolist(), predicted.tolist(), strict=True):
        confusion[t, p] += 1
    print("true \\ probe " + " ".join(f"{n:>6}" for n in names))
    for i, name in enumerate(names):
        print(f"{name:>12} " + " ".join(f"{v:6d}" for v in confusion[i].tolist()))
    rows = cell[test] // VIEW
    for r in range(VIEW):
        if (m := rows == r).any():
            print(f"view row {r}: {int(m.sum()):5d} cells, accuracy {right[m].float().mean():.3f}")


if __name__ == "__main__":
    main()

"""Perception pretraining: cell labels line up with the frames, a short run learns them, and BC keeps the
pretrained encoder frozen."""

import numpy as np
import torch

from flare_sim.cameras import tile_table
from flare_training.bc import BCConfig, train_bc
from flare_training.checkpoint import load_checkpoint
from flare_training.model import ModelConfig
from flare_training.perception import PerceptionConfig, collect_frames, train_perception

TINY = ModelConfig(d_model=32, layers=1, heads=2, goal_dim=16, fusion="film")


def test_cell_labels_are_what_each_frame_cell_shows():
    data = collect_frames(50, seed=3)
    assert data["nav_cells"].shape == (50, 7, 7, 3) and data["manip_cells"].shape == (50, 3, 3, 3)
    table = tile_table(8)
    for frame, cells in zip(data["nav_rgb"][:10], data["nav_cells"][:10], strict=True):
        for row, col in [(0, 0), (2, 5), (6, 0), (5, 3)]:  # (6, 3) is the agent's own cell, drawn with the agent
            t, c, s = (int(v) for v in cells[row, col])
            code = (t * 6 + c) * 3 + s
            table.ensure(np.array([code]))
            np.testing.assert_array_equal(frame[row * 8 : row * 8 + 8, col * 8 : col * 8 + 8], table.cells[code])
    np.testing.assert_array_equal(data["manip_cells"][:, 0], data["nav_cells"][:, 4, 2:5])


def test_pretraining_learns_and_bc_keeps_the_encoder_frozen(tmp_path):
    ckpt = train_perception(
        PerceptionConfig(out=str(tmp_path / "p"), frames=3000, epochs=3, batch=64, lr=3e-3, model=TINY)
    )
    model, _, payload = load_checkpoint(ckpt)
    assert payload["kind"] == "perception" and min(payload["cell_accuracy"].values()) > 0.5
    before = {k: v.clone() for k, v in model.visual.state_dict().items()}
    bc_dir = tmp_path / "bc"
    config = BCConfig(out=str(bc_dir), demos=12, workers=1, epochs=2, eval_episodes=0, visual_from=str(ckpt),
                      model=TINY)  # fmt: skip
    bc_model, _, _ = load_checkpoint(train_bc(config))
    for k, v in bc_model.visual.state_dict().items():
        torch.testing.assert_close(v, before[k])
    pairs = zip(bc_model.actor.parameters(), model.actor.parameters(), strict=True)
    assert not all(torch.equal(a, b) for a, b in pairs)  # the policy itself did train

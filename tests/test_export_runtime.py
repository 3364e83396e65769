"""Export and the ONNX Runtime policy: parity with torch over simulated episodes, refusal of every broken or
mismatched model with a clear message, cache reset on a new goal, and the long-episode (sliding window) rule."""

import json
import shutil

import numpy as np
import pytest
import torch

from flare_core import ModelCardError
from flare_core.runtime import OnnxPolicy, PolicyLoadError
from flare_sim import FAMILIES, GridhouseEnv
from flare_training.checkpoint import load_checkpoint, save_checkpoint
from flare_training.export import export_policy
from flare_training.inputs import ObservationAdapter, gridhouse_cameras, gridhouse_tokenizer
from flare_training.model import ActorCritic, ModelConfig


def _checkpoint(path, **overrides):
    adapter = ObservationAdapter(gridhouse_tokenizer(), gridhouse_cameras())
    config = ModelConfig(d_model=32, layers=2, heads=4, visual_dim=16, goal_dim=16, vocab_size=len(adapter.tokenizer))
    torch.manual_seed(0)
    model = ActorCritic(ModelConfig(**{**config.__dict__, **overrides}), adapter.camera_shapes)
    return save_checkpoint(path / "checkpoint.pt", model, adapter, kind="bc", env_steps=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    ckpt = _checkpoint(root / "run")
    return ckpt, export_policy(ckpt, root / "model")


def _frames(obs):
    return {"nav": obs["nav_rgb"], "manip": obs["manip_rgb"]}


def test_onnx_matches_torch_over_whole_episodes(exported):
    ckpt, model_dir = exported
    model, adapter, _ = load_checkpoint(ckpt)
    model.eval()
    policy = OnnxPolicy(model_dir, greedy=True)
    env = GridhouseEnv(families=tuple(FAMILIES), split="eval", expert=True)
    steps = 0
    for episode in range(4):
        obs, info = env.reset(seed=episode, options={"house": episode})
        cache, _ = model.new_caches(1)
        policy.reset(obs["goal"])
        done = False
        while not done:
            batch = {k: [v] for k, v in obs.items()}
            with torch.no_grad():
                inputs = adapter.step_inputs(batch)
                inputs["visual"] = model.visual(adapter.frames(batch))
                expected = model.actor.step(inputs, cache)["logits"][0].numpy()
            result = policy.act(_frames(obs), holding=bool(obs["holding"]))
            np.testing.assert_allclose(result.logits, expected, atol=1e-4, rtol=0)
            assert result.action == int(np.argmax(np.where(env.embodiment.mask, expected, -np.inf)))
            # The expert drives (an untrained policy would end at once), and both models see what was executed.
            policy.executed(info["expert_action"])
            obs, _, terminated, truncated, info = env.step(info["expert_action"])
            done = terminated or truncated
            steps += 1
    assert steps > 20


def test_card_records_what_a_loader_checks(exported):
    _, model_dir = exported
    card = json.loads((model_dir / "model.json").read_text())
    assert card["cache"] == {"layers": 2, "heads": 4, "head_dim": 8, "max_context": 128}
    assert [c["name"] for c in card["cameras"]] == ["nav", "manip"] and card["opset"] == 17
    assert len(card["action_names"]) == 20 and card["goal_tokenizer"]["vocab"][:2] == ["<pad>", "<unk>"]


def _copy(model_dir, tmp_path):
    return shutil.copytree(model_dir, tmp_path / "model")


def _edit_card(model_dir, edit):
    card = json.loads((model_dir / "model.json").read_text())
    edit(card)
    (model_dir / "model.json").write_text(json.dumps(card))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["cache"].update(heads=8), "heads x head_dim 4 x 8, the card says 8 x 8"),
        (lambda c: c["cache"].update(layers=3), "the graph has 2 cache layers, the card says 3"),
        (lambda c: c["cameras"][0]["preprocessing"].update(height=64), r"images.nav is \[3, 56, 56\].*\[3, 64, 56\]"),
        (lambda c: c["goal_tokenizer"].update(max_tokens=8), "card's 8 tokens"),
    ],
)
def test_card_graph_mismatches_are_refused(exported, tmp_path, edit, message):
    model_dir = _copy(exported[1], tmp_path)
    _edit_card(model_dir, edit)
    with pytest.raises(PolicyLoadError, match=message):
        OnnxPolicy(model_dir)


def test_wrong_action_count_is_refused(tmp_path):
    ckpt = _checkpoint(tmp_path / "run")
    model, adapter, payload = load_checkpoint(ckpt)
    model.actor.heads["logits"] = torch.nn.Linear(32, 12)  # a 12-action policy
    save_checkpoint(ckpt, model, adapter, **{k: v for k, v in payload.items() if k in ("kind", "env_steps")})
    with pytest.raises(RuntimeError, match="does not fit"):
        load_checkpoint(ckpt)  # the checkpoint loader refuses it first...
    from flare_training.export import OnnxStep, example_inputs, io_names

    model_dir = export_policy(_checkpoint(tmp_path / "ok"), tmp_path / "model")
    inputs, outputs = io_names(("nav", "manip"), 2)
    torch.onnx.export(OnnxStep(model).eval(), example_inputs(model, 1), model_dir / "policy.onnx", dynamo=False,
                      input_names=inputs, output_names=outputs, opset_version=17)  # fmt: skip
    with pytest.raises(
        PolicyLoadError, match="logits .* do not cover the card's 20 actions"
    ):  # ...and so does the runtime
        OnnxPolicy(model_dir)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_graph_is_refused(exported, tmp_path, damage):
    model_dir = _copy(exported[1], tmp_path)
    path = model_dir / "policy.onnx"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x08\x07not an onnx model" * 50)
    with pytest.raises(PolicyLoadError, match="not a loadable ONNX model"):
        OnnxPolicy(model_dir)


def test_missing_files_are_refused(exported, tmp_path):
    model_dir = _copy(exported[1], tmp_path)
    (model_dir / "policy.onnx").unlink()
    with pytest.raises(PolicyLoadError, match="policy graph not found"):
        OnnxPolicy(model_dir)
    (model_dir / "model.json").unlink()
    with pytest.raises(ModelCardError, match="model card not found"):
        OnnxPolicy(model_dir)
    with pytest.raises(PolicyLoadError, match="not 'locobot'"):
        OnnxPolicy(exported[1], embodiment="locobot")


def test_a_new_goal_resets_the_cache(exported):
    env = GridhouseEnv(families=("objectnav",))
    obs, _ = env.reset(seed=0)
    policy = OnnxPolicy(exported[1])
    for _ in range(3):
        policy.act(_frames(obs), holding=False, goal="go to the red ball")
    assert policy.step_index == 3 and policy._cache["0.key"].shape[2] == 3
    first = policy.act(_frames(obs), holding=False, goal="go to the blue key")
    assert policy.step_index == 1 and policy._cache["0.key"].shape[2] == 1
    fresh = OnnxPolicy(exported[1]).act(_frames(obs), holding=False, goal="go to the blue key")
    np.testing.assert_array_equal(first.logits, fresh.logits)


def test_long_episodes_slide_the_window(tmp_path):
    """With max_context 4: the cache never holds more than 3 past steps, and once the window has slid past
    the steps where two episodes differed, they decide identically. (Exactly so with one layer; deeper layers'
    cached states were computed while attending to older steps, so those leave a faint trace.)"""
    model_dir = export_policy(_checkpoint(tmp_path / "run", max_context=4, layers=1), tmp_path / "model")
    env = GridhouseEnv(families=("objectnav",))
    a_obs, _ = env.reset(seed=1)
    b_obs, _ = env.reset(seed=2)  # a different house: different frames
    a, b = OnnxPolicy(model_dir), OnnxPolicy(model_dir)
    a.reset("go to the red ball")
    b.reset("go to the red ball")
    for step in range(10):
        early = step < 4
        ra = a.act(_frames(a_obs), holding=False)
        rb = b.act(_frames(b_obs if early else a_obs), holding=False)
        b.prev_action = a.prev_action  # same history from here on
        assert a._cache["0.key"].shape[2] <= 3
        assert ra.context_full == (step >= 3)
    np.testing.assert_allclose(ra.logits, rb.logits, atol=1e-6)

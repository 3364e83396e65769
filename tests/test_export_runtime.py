"""Export and the ONNX Runtime policy: parity with torch over simulated episodes, refusal of every broken or
mismatched model with a clear message, cache reset on a new goal, and the long-episode (sliding window) rule."""

import json
import shutil

import numpy as np
import pytest
import torch

from flare_core import ModelCardError, action_by_name
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


@pytest.fixture(scope="module")
def exported_in_place(tmp_path_factory, exported):
    """The same checkpoint with the in-place ("shared") cache layout."""
    return exported[0], export_policy(exported[0], tmp_path_factory.mktemp("export") / "model", cache_layout="shared")


def _frames(obs):
    return {"nav": obs["nav_rgb"], "manip": obs["manip_rgb"]}


@pytest.mark.parametrize("layout", ["concat", "shared"])
def test_onnx_matches_torch_over_whole_episodes(exported, exported_in_place, layout):
    _assert_parity(*(exported if layout == "concat" else exported_in_place), episodes=4)


def test_the_card_names_the_runs_the_policy_was_trained_from(tmp_path):
    """bc from a perception encoder, PPO from the BC, PPO again: the last one's card lists the three, oldest first;
    a run deleted since is named as missing and ends the chain."""
    adapter = ObservationAdapter(gridhouse_tokenizer(), gridhouse_cameras())
    model = load_checkpoint(_checkpoint(tmp_path / "seed"))[0]
    save_checkpoint(tmp_path / "perception" / "checkpoint.pt", model, adapter, kind="perception", env_steps=0)
    bc = {"visual_from": str(tmp_path / "perception"), "families": ["objectnav"], "demos": 40}
    save_checkpoint(tmp_path / "bc" / "checkpoint.pt", model, adapter, kind="bc", env_steps=0, config=bc)
    ppo = {"init": str(tmp_path / "bc"), "visual_from": "", "families": ["objectnav", "pickup"]}
    save_checkpoint(tmp_path / "ppo" / "checkpoint.pt", model, adapter, kind="ppo", env_steps=4096, config=ppo)
    last = {**ppo, "init": str(tmp_path / "ppo")}
    save_checkpoint(tmp_path / "last" / "checkpoint.pt", model, adapter, kind="ppo", env_steps=8192, config=last)
    card = json.loads((export_policy(tmp_path / "last", tmp_path / "model") / "model.json").read_text())
    assert card["provenance"]["env_steps"] == 8192
    assert [(s["run"], s["kind"], s["env_steps"], s["tasks"], s["demos"]) for s in card["provenance"]["lineage"]] == [
        (str(tmp_path / "perception"), "perception", 0, [], 0),
        (str(tmp_path / "bc"), "bc", 0, ["objectnav"], 40),
        (str(tmp_path / "ppo"), "ppo", 4096, ["objectnav", "pickup"], 0),
    ]
    shutil.rmtree(tmp_path / "bc")
    card = json.loads((export_policy(tmp_path / "last", tmp_path / "again") / "model.json").read_text())
    assert [(s["run"], s["kind"]) for s in card["provenance"]["lineage"]] == [
        (str(tmp_path / "bc"), "missing"),
        (str(tmp_path / "ppo"), "ppo"),
    ]


def test_a_film_model_with_goal_cell_heads_exports_with_parity(tmp_path):
    """The heads' per-cell logits are part of the step token: the graph must compute them as torch does."""
    ckpt = _checkpoint(tmp_path / "run", fusion="film", goal_cells=True)
    _assert_parity(ckpt, export_policy(ckpt, tmp_path / "model"), episodes=2)


def _assert_parity(ckpt, model_dir, episodes):
    model, adapter, _ = load_checkpoint(ckpt)
    model.eval()
    policy = OnnxPolicy(model_dir, greedy=True)
    env = GridhouseEnv(families=tuple(FAMILIES), split="eval", expert=True)
    steps = 0
    for episode in range(episodes):
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
    assert steps > 5 * episodes


def test_card_records_what_a_loader_checks(exported):
    _, model_dir = exported
    card = json.loads((model_dir / "model.json").read_text())
    cache = {"layers": 2, "heads": 4, "head_dim": 8, "max_context": 128, "layout": "concat", "dtype": "float32"}
    assert card["cache"] == cache
    assert card["weights"] == "float32"
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


def test_cache_layout_mismatches_are_refused(exported, exported_in_place, tmp_path):
    concat = _copy(exported[1], tmp_path / "a")
    _edit_card(concat, lambda c: c["cache"].update(layout="shared"))
    with pytest.raises(PolicyLoadError, match="length past_len, but the card's 'shared' layout needs a fixed buffer"):
        OnnxPolicy(concat)
    shared = _copy(exported_in_place[1], tmp_path / "b")
    _edit_card(shared, lambda c: c["cache"].update(layout="concat"))
    with pytest.raises(PolicyLoadError, match="fixed buffer of 128, but the card's 'concat' layout"):
        OnnxPolicy(shared)
    _edit_card(shared, lambda c: c["cache"].update(layout="shared", dtype="int8"))
    with pytest.raises(PolicyLoadError, match="is tensor.float., the card's cache.dtype says int8"):
        OnnxPolicy(shared)
    _edit_card(shared, lambda c: c["cache"].update(layout="concat", dtype="int8"))
    with pytest.raises(ModelCardError, match="an int8 cache needs the 'shared' layout"):
        OnnxPolicy(shared)
    _edit_card(shared, lambda c: c["cache"].update(layout="ring"))
    with pytest.raises(ModelCardError, match="cache.layout: must be one of concat, shared, got 'ring'"):
        OnnxPolicy(shared)


@pytest.mark.parametrize(
    "options", [{"weights": "int8"}, {"cache_layout": "shared", "cache_dtype": "int8"}], ids=["weights", "cache"]
)
def test_int8_decides_like_float32(exported, tmp_path, options):
    """int8 weights (dynamic quantization) or an int8 in-place cache (scales calibrated on episodes), latency
    options for big decoders, keep the decisions: the same greedy action on nearly every step of expert-driven
    episodes, logits close."""
    ckpt, model_dir = exported
    int8_dir = export_policy(ckpt, tmp_path / "int8", **options)
    card = json.loads((int8_dir / "model.json").read_text())
    if "weights" in options:
        assert card["weights"] == "int8"
        assert (int8_dir / "policy.onnx").stat().st_size < (model_dir / "policy.onnx").stat().st_size / 2
    else:
        assert card["cache"]["dtype"] == "int8"
    full, int8 = OnnxPolicy(model_dir), OnnxPolicy(int8_dir)
    env = GridhouseEnv(families=tuple(FAMILIES), split="eval", expert=True)
    same, steps, worst = 0, 0, 0.0
    for episode in range(3):
        obs, info = env.reset(seed=episode, options={"house": episode})
        done = False
        while not done:
            a = full.act(_frames(obs), holding=bool(obs["holding"]), goal=obs["goal"])
            b = int8.act(_frames(obs), holding=bool(obs["holding"]), goal=obs["goal"])
            same += a.action == b.action
            steps += 1
            worst = max(worst, float(np.abs(a.logits - b.logits).max()))
            full.executed(info["expert_action"])
            int8.executed(info["expert_action"])
            obs, _, terminated, truncated, info = env.step(info["expert_action"])
            done = terminated or truncated
    assert same / steps >= 0.9 and worst < 0.1, (same, steps, worst)


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
    assert policy.step_index == 3 and policy.cache_length == 3
    first = policy.act(_frames(obs), holding=False, goal="go to the blue key")
    assert policy.step_index == 1 and policy.cache_length == 1
    fresh = OnnxPolicy(exported[1]).act(_frames(obs), holding=False, goal="go to the blue key")
    np.testing.assert_array_equal(first.logits, fresh.logits)


@pytest.mark.parametrize("layout", ["concat", "shared"])
def test_long_episodes_slide_the_window(tmp_path, layout):
    """With max_context 4: the cache never holds more than 3 past steps, and once the window has slid past
    the steps where two episodes differed, they decide identically. (Exactly so with one layer; deeper layers'
    cached states were computed while attending to older steps, so those leave a faint trace.)"""
    ckpt = _checkpoint(tmp_path / "run", max_context=4, layers=1)
    model_dir = export_policy(ckpt, tmp_path / "model", cache_layout=layout)
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
        assert a.cache_length == min(step + 1, 3)
        assert ra.context_full == (step >= 3)
    np.testing.assert_allclose(ra.logits, rb.logits, atol=1e-6)


def test_both_cache_layouts_decide_alike_beyond_the_context(tmp_path):
    """Two layers, max_context 4, 12 steps: the in-place buffer slides its window exactly like the concat path."""
    ckpt = _checkpoint(tmp_path / "run", max_context=4)
    concat = OnnxPolicy(export_policy(ckpt, tmp_path / "concat"))
    shared = OnnxPolicy(export_policy(ckpt, tmp_path / "shared", cache_layout="shared"))
    env = GridhouseEnv(families=("objectnav",))
    obs, _ = env.reset(seed=4)
    rng = np.random.default_rng(0)
    stop = {action_by_name(n).index for n in ("end", "sub_done")}  # keep the episode going
    valid = [i for i in np.flatnonzero(env.embodiment.mask) if i not in stop]
    for _ in range(12):
        a = concat.act(_frames(obs), holding=bool(obs["holding"]), goal=obs["goal"])
        b = shared.act(_frames(obs), holding=bool(obs["holding"]), goal=obs["goal"])
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
        assert (a.context_full, concat.cache_length) == (b.context_full, shared.cache_length)
        action = int(rng.choice(valid))
        concat.executed(action)
        shared.executed(action)
        obs, *_ = env.step(action)
    assert shared.cache_length == 3

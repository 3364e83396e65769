"""FLaRe's released checkpoints: import (both formats), the FLaRe model family against an independent reference
forward (tests/flare_reference.py, written from FLaRe's source), ONNX export with the T5 goal encoder, refusals.

DINOv2-S/14 and T5-small are built from their configs with random weights (nothing can be downloaded here); the
checkpoints carry exactly the official key names and shapes with random values.
"""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from flare_reference import il_checkpoint, official_state_dict, reference_forward, rl_checkpoint
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import Dinov2Config, Dinov2Model, T5Config, T5EncoderModel

from flare_bag.replay import replay
from flare_bringup.graph import Graph
from flare_bringup.runner import EpisodeRunner
from flare_core.actions import ACTION_NAMES
from flare_core.preprocessing import preprocess
from flare_core.runtime import OnnxPolicy
from flare_training.checkpoint import read_checkpoint
from flare_training.cli import main
from flare_training.export import export_policy
from flare_training.flare_import import CheckpointMismatch, import_flare, load_flare_checkpoint

GOAL = "find a red mug"
WORDS = "go to the a find pick up red blue chair mug bed sofa apple room kitchen".split()
STEPS = 4


def t5_small_config() -> T5Config:
    return T5Config(
        d_model=512, d_kv=64, num_heads=8, d_ff=2048, num_layers=6, vocab_size=32128, feed_forward_proj="relu"
    )


def write_t5_tokenizer(path) -> None:
    """A small T5-style tokenizer.json (Unigram pieces, pad 0, </s> 1 appended, unk 2), as t5-small's is built."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("\u2581" + w, -2.0) for w in WORDS]
    vocab += [(c, -8.0) for c in "abcdefghijklmnopqrstuvwxyz"] + [("\u2581", -6.0)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer.save(str(path))


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """HF directories as a user downloads them (DINOv2-S/14, t5-small config + tokenizer.json), and FLaRe's
    actor and critic state dicts with the official layout."""
    root = tmp_path_factory.mktemp("flare")
    torch.manual_seed(0)
    dinov2 = Dinov2Model(
        Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14, image_size=518)
    ).eval()
    dinov2.save_pretrained(root / "dinov2")
    t5_small_config().save_pretrained(root / "t5")
    write_t5_tokenizer(root / "t5" / "tokenizer.json")
    t5 = T5EncoderModel(t5_small_config()).eval()
    actor, critic = official_state_dict(t5, seed=0), official_state_dict(t5, seed=1)
    return {"root": root, "dinov2": dinov2, "t5": t5, "actor": actor, "critic": critic}


def episode(seed: int = 0):
    """Raw 396 x 224 frames (AI2-THOR's render size) for both cameras, previous actions and holding flags."""
    rng = np.random.default_rng(seed)
    frames = [{c: rng.integers(0, 256, (224, 396, 3), dtype=np.uint8) for c in ("nav", "manip")} for _ in range(STEPS)]
    prev = torch.tensor([20, 0, 3, 8])  # episode start, then m, b, p
    holding = torch.tensor([0, 0, 1, 1])
    return frames, prev, holding


def reference(upstream, sd, frames, prev, holding, camera, input_ids):
    images = {c: torch.from_numpy(np.stack([preprocess(f[c], camera) for f in frames])) for c in ("nav", "manip")}
    with torch.no_grad():
        return reference_forward(sd, upstream["dinov2"], upstream["t5"], images["nav"], images["manip"], input_ids,
                                 prev, holding, torch.arange(STEPS))  # fmt: skip


def ours(model, frames, prev, holding, camera, input_ids):
    images = {c: torch.from_numpy(np.stack([preprocess(f[c], camera) for f in frames]))[None] for c in ("nav", "manip")}
    with torch.no_grad():
        goal, critic_goal = model.encode_goals(input_ids)
        batch = {"features": model.features(images), "goal": goal, "critic_goal": critic_goal,
                 "prev_action": prev[None], "holding": holding[None], "step": torch.arange(STEPS)[None],
                 "episode": torch.zeros(1, STEPS, dtype=torch.long)}  # fmt: skip
        logits, values = model.sequence(batch)
    return logits[0], values[0]


def do_import(upstream, payload, name):
    root = upstream["root"]
    torch.save(payload, root / f"{name}.pt")
    import_flare(root / f"{name}.pt", root / name, root / "dinov2", root / "t5")
    path, stored = read_checkpoint(root / name)
    return load_flare_checkpoint(stored).eval(), stored


def goal_ids(upstream, goal=GOAL):
    tokenizer = Tokenizer.from_file(str(upstream["root"] / "t5" / "tokenizer.json"))
    return torch.tensor([tokenizer.encode(goal).ids])


@pytest.fixture(scope="module")
def rl_run(upstream):
    """FLaRe's RL checkpoint (AllenAct format) imported as a run."""
    payload = rl_checkpoint(upstream["actor"], upstream["critic"], total_steps=21026752)
    return do_import(upstream, payload, "rl")


def test_rl_checkpoint_imports_and_matches_the_reference(upstream, rl_run):
    model, stored = rl_run
    assert stored["env_steps"] == 21026752 and stored["source"]["format"] == "allenact"
    frames, prev, holding = episode()
    camera, ids = model_camera(stored), goal_ids(upstream)
    logits, values = ours(model, frames, prev, holding, camera, ids)
    ref_logits, _ = reference(upstream, upstream["actor"], frames, prev, holding, camera, ids)
    _, ref_values = reference(upstream, upstream["critic"], frames, prev, holding, camera, ids)
    assert (logits - ref_logits).abs().max() < 1e-5
    assert (values - ref_values).abs().max() < 1e-5
    assert ref_logits.std() > 0.05  # the comparison means something: logits vary over actions and steps


def test_batched_goals_of_different_lengths_fuse_as_each_alone(upstream, rl_run):
    """The trainer pads goal ids to a fixed width; the padding is masked out of the fusion, so each row decides as
    the robot does with that goal unpadded."""
    from flare_training.flare_adapter import FlareTrainable

    model, _ = rl_run
    trainable = FlareTrainable(model)
    tokenizer = Tokenizer.from_file(str(upstream["root"] / "t5" / "tokenizer.json"))
    goals = [tokenizer.encode(g).ids for g in (GOAL, "go to the blue chair in the kitchen")]
    ids = torch.zeros(2, 16, dtype=torch.long)
    for row, g in zip(ids, goals, strict=True):
        row[: len(g)] = torch.tensor(g)
    visual = torch.randn(2, trainable.visual.out_dim)
    inputs = {"visual": visual, "goal": ids, "prev_action": torch.tensor([20, 3]), "holding": torch.tensor([0, 1])}
    with torch.no_grad():
        batched = trainable.actor.step(inputs, model.new_cache(2))["logits"]
        for i, g in enumerate(goals):
            features = trainable.visual.split(visual[i : i + 1])
            goal = model.visual_encoder.encode_goal(torch.tensor([g]))
            alone = model.actor(model.step(features, goal, inputs["prev_action"][i : i + 1],
                                           inputs["holding"][i : i + 1], model.new_cache(1)))  # fmt: skip
            assert (batched[i] - alone[0]).abs().max() < 1e-4


@pytest.fixture(scope="module")
def rl_model(upstream, rl_run):
    """The RL import exported: goal_encoder.onnx, policy.onnx, tokenizer.json, model.json."""
    return export_policy(upstream["root"] / "rl", upstream["root"] / "rl_model")


def test_steps_against_the_cache_equal_the_whole_sequence(upstream, rl_run):
    model, stored = rl_run
    frames, prev, holding = episode(3)
    camera, ids = model_camera(stored), goal_ids(upstream)
    logits, _ = ours(model, frames, prev, holding, camera, ids)
    cache = model.new_cache(1)
    with torch.no_grad():
        goal, _ = model.encode_goals(ids)
        for t in range(STEPS):
            images = {c: torch.from_numpy(preprocess(frames[t][c], camera))[None] for c in ("nav", "manip")}
            h = model.step(model.features(images), goal, prev[t : t + 1], holding[t : t + 1], cache)
            assert (model.actor(h)[0] - logits[t]).abs().max() < 1e-5


@pytest.fixture(scope="module")
def il_run(upstream):
    """FLaRe's IL checkpoint (Lightning format, DINOv2's hub weights inside, ignored) imported as a run."""
    hub = {"blocks.0.attn.qkv.weight": torch.zeros(1152, 384), "pos_embed": torch.zeros(1, 1370, 384)}
    return do_import(upstream, il_checkpoint(upstream["actor"], dinov2_hub_keys=hub), "il")


def test_il_checkpoint_imports_with_a_fresh_critic_copied_from_the_actor(upstream, il_run):
    model, stored = il_run
    assert stored["env_steps"] == 0 and stored["source"]["format"] == "lightning"
    frames, prev, holding = episode(1)
    camera, ids = model_camera(stored), goal_ids(upstream)
    logits, _ = ours(model, frames, prev, holding, camera, ids)
    ref_logits, _ = reference(upstream, upstream["actor"], frames, prev, holding, camera, ids)
    assert (logits - ref_logits).abs().max() < 1e-5
    # FLaRe starts RL with the critic network a copy of the IL actor and a fresh value head (orthogonal, bias 0).
    state = model.state_dict()
    assert torch.equal(state["critic_tsfm.decoder.output.weight"], upstream["actor"]["decoder.output.weight"])
    assert torch.equal(state["critic.fc.bias"], torch.zeros(1))
    assert abs(float(state["critic.fc.weight"].norm()) - 1.0) < 1e-5  # orthogonal init of a 1 x 512 row


def test_the_il_import_fine_tunes_with_ppo_and_exports(upstream, il_run, tmp_path):
    """FLaRe's recipe from their IL checkpoint, through the CLI: the trainer drives the imported model (here in
    the gridhouse, whose frames are upscaled to 224 x 384), the policy that acted through its KV-cache is the
    one the update divides by, warm-up moves only the critic, and the result exports like any run."""
    out = tmp_path / "ppo"
    main(["ppo", "--init", str(upstream["root"] / "il"), "--out", str(out), "--num-envs", "2", "--rollout", "4",
          "--total-env-steps", "16", "--epochs", "2", "--minibatches", "1", "--env-workers", "0",
          "--critic-warmup-steps", "8", "--families", "objectnav", "--eval-every", "1000000",
          "--eval-episodes", "1", "--final-eval-episodes", "0"])  # fmt: skip
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2]
    assert rows[0]["critic_warmup"] and rows[0]["approx_kl"] < 1e-9 and rows[1]["approx_kl"] > 1e-9
    assert max(r["cache_vs_sequence_logprob"] for r in rows) < 1e-5
    _, tuned = read_checkpoint(out)
    before = il_run[0].state_dict()
    assert tuned["family"] == "flare" and tuned["kind"] == "ppo" and tuned["env_steps"] == 16
    for key in ("decoder.output.weight", "critic_tsfm.critic.fc.weight", "visual_encoder.text_adapter.0.weight"):
        assert not torch.equal(tuned["model"][key], before[key]), key  # trained
    for key in ("dinov2.backbone.embeddings.position_embeddings", "visual_encoder.text_encoder.shared.weight"):
        assert torch.equal(tuned["model"][key], before[key]), key  # frozen
    policy = OnnxPolicy(export_policy(out, tmp_path / "model"))
    assert policy.card.provenance.env == "gridhouse" and policy.card.provenance.env_steps == 16
    frames, _, _ = episode(5)
    assert policy.act(frames[0], holding=False, goal=GOAL).name in ACTION_NAMES


def test_exported_model_runs_in_onnx_runtime_like_the_reference(upstream, rl_model):
    policy = OnnxPolicy(rl_model, embodiment="stretch_re1")
    card = policy.card
    assert card.goal_encoder.graph == "goal_encoder.onnx" and card.goal_tokenizer.file == "tokenizer.json"
    assert [c.preprocessing.width for c in card.cameras] == [384, 384] and card.cache.max_context == 1000
    for seed, goal in enumerate((GOAL, "go to the blue chair in the kitchen")):  # goals of 5 and 10 tokens
        frames, prev, holding = episode(seed)
        policy.reset(goal)
        logits = []
        for t in range(STEPS):
            logits.append(policy.act(frames[t], holding=bool(holding[t])).logits)
            if t + 1 < STEPS:
                policy.executed(int(prev[t + 1]))  # the recorded history, as bag replay feeds it
        camera, ids = card.cameras[0].preprocessing, goal_ids(upstream, goal)
        ref_logits, _ = reference(upstream, upstream["actor"], frames, prev, holding, camera, ids)
        assert np.abs(np.stack(logits) - ref_logits.numpy()).max() < 1e-4
    assert policy.check_goal("find a red mug") == ""
    assert "cannot represent" in policy.check_goal("find the xylophone!")


def model_camera(stored):
    from flare_core.preprocessing import PreprocessConfig

    return PreprocessConfig.from_dict(stored["cameras"][0]["preprocessing"])


def refusal(upstream, payload_or_bytes, name) -> str:
    root = upstream["root"]
    path = root / f"{name}.pt"
    if isinstance(payload_or_bytes, bytes):
        path.write_bytes(payload_or_bytes)
    else:
        torch.save(payload_or_bytes, path)
    with pytest.raises(CheckpointMismatch) as err:
        import_flare(path, root / name, root / "dinov2", root / "t5")
    assert not (root / name).exists()  # nothing half-written
    return str(err.value)


def test_a_renamed_key_and_a_reshaped_one_are_named(upstream):
    actor = dict(upstream["actor"])
    actor["decoder.layers.0.attention.query.weight"] = actor.pop("decoder.layers.0.attention.wq.weight")
    actor["last_actions_embed.weight"] = torch.zeros(21, 512)
    message = refusal(upstream, rl_checkpoint(actor, upstream["critic"]), "renamed")
    assert "missing (1): decoder.layers.0.attention.wq.weight" in message
    assert "unexpected (1): decoder.layers.0.attention.query.weight" in message
    assert "last_actions_embed.weight (21, 512) (model (22, 512))" in message


def test_a_spoc_checkpoint_is_refused_as_another_architecture(upstream):
    spoc = {
        f"model.{k}": v for k, v in upstream["actor"].items() if not k.startswith(("decoder.", "actor.", "critic."))
    }
    spoc |= {
        "model.decoder.layers.0.self_attn.in_proj_weight": torch.zeros(1536, 512),
        "model.decoder.layers.0.multihead_attn.in_proj_weight": torch.zeros(1536, 512),
        "model.action_classifier.weight": torch.zeros(20, 512),
    }
    message = refusal(upstream, {"state_dict": spoc}, "spoc")
    assert "SPOC's own architecture" in message and "model.action_classifier" not in message
    assert "action_classifier.weight" in message and "decoder.layers.0.attention.wq.weight" in message


def test_a_truncated_file_and_a_foreign_dict_are_refused(upstream):
    root = upstream["root"]
    torch.save(rl_checkpoint(upstream["actor"], upstream["critic"]), root / "whole.pt")
    data = (root / "whole.pt").read_bytes()
    assert "truncated or corrupt" in refusal(upstream, data[: len(data) // 3], "truncated")
    args = ["import", str(root / "truncated.pt"), "--out", str(root / "cli"), "--dinov2", str(root / "dinov2"),
            "--t5", str(root / "t5")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_code:
        main(args)  # the command line says it in one line on stderr, exit 2, no traceback
    assert exit_code.value.code == 2 and not (root / "cli").exists()
    assert "neither a Lightning checkpoint" in refusal(upstream, {"weights": {}}, "foreign")


def test_missing_downloads_say_how_to_get_them(upstream, tmp_path):
    shutil.copytree(upstream["root"] / "t5", tmp_path / "t5")
    (tmp_path / "t5" / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="hf download google-t5/t5-small tokenizer.json"):
        import_flare(tmp_path / "x.pt", tmp_path / "run", upstream["root"] / "dinov2", tmp_path / "t5")
    with pytest.raises(FileNotFoundError, match="hf download facebook/dinov2-small"):
        import_flare(tmp_path / "x.pt", tmp_path / "run", tmp_path / "nowhere", upstream["root"] / "t5")
    base = tmp_path / "dinov2-base"  # another DINOv2 size: refused before anything is built
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"hidden_size": 768, "patch_size": 14}))
    with pytest.raises(CheckpointMismatch, match="DINOv2-S/14"):
        import_flare(tmp_path / "x.pt", tmp_path / "run", base, upstream["root"] / "t5")
    (base / "config.json").write_text(json.dumps({"hidden_size": 384, "patch_size": 14}))  # config, no weights
    with pytest.raises(FileNotFoundError, match="no DINOv2 weights"):
        import_flare(tmp_path / "x.pt", tmp_path / "run", base, upstream["root"] / "t5")


def test_imported_model_runs_the_ros_graph_and_replays_from_its_bag(rl_model, tmp_path):
    """Plumbing, not success (random weights, gridhouse frames): the imported and exported FLaRe model drives the
    simulated Stretch through the ROS 2 graph (two goals, each its own episode), and bag replay re-derives the
    recorded decisions from the recorded frames."""
    model_dir = rl_model
    overrides = {"flare_policy": {"step_limit": 5}}  # ~0.3 s a decision on this CPU: short episodes
    graph = Graph("stretch", model=str(model_dir), overrides=overrides, log_dir=tmp_path / "logs",
                  record=str(tmp_path / "bag")).start()  # fmt: skip
    runner = EpisodeRunner()
    try:
        runner.wait_ready(timeout=120, recorders=1)
        outcomes = [runner.run_episode("objectnav", house, timeout=120) for house in range(2)]
        dead = graph.dead()
    finally:
        runner.close()
        graph.stop()
    assert not dead, dead
    simulated = {"m", "r", "l", "end", "sub_done", "p", "d"}  # the gridhouse's body: nothing else is sent
    for outcome in outcomes:
        assert 1 <= len(outcome.actions) <= 5 and set(outcome.actions) <= simulated, outcome
        assert outcome.reason and all(ms > 0 for ms in outcome.inference_ms)
    report, _ = replay(tmp_path / "bag", model_dir, robot="stretch_re1+gridhouse", progress=False, allow_upscale=True)
    summary = report["summary"]
    assert summary["episodes_replayed"] == 2, [e["error"] for e in report["episodes"]]
    assert summary["decisions"] == sum(len(o.actions) for o in outcomes) and summary["agreement"] == 1.0


def test_int8_weights_and_the_in_place_cache_keep_the_logits_close(upstream, rl_model, tmp_path):
    """`export --weights int8 --cache-layout shared` (DINOv2's weights dynamically quantized, the cache written in
    place): the logits stay within the tolerance the embedded model's int8 exports are held to (0.1)."""
    fp32 = OnnxPolicy(rl_model)
    int8 = OnnxPolicy(export_policy(upstream["root"] / "rl", tmp_path / "int8", weights="int8", cache_layout="shared"))
    assert int8.card.weights == "int8" and int8.card.cache.layout == "shared"
    integer = [n.name for n in onnx.load(tmp_path / "int8" / "policy.onnx").graph.node if "Integer" in n.op_type
               or n.op_type == "DynamicQuantizeMatMul"]  # fmt: skip
    assert integer and all(name.startswith("/dinov2/") for name in integer)  # the fusion and decoder stay float
    frames, prev, holding = episode(4)
    for policy in (fp32, int8):
        policy.reset(GOAL)
    for t in range(STEPS):
        a, b = (p.act(frames[t], holding=bool(holding[t])).logits for p in (fp32, int8))
        assert np.abs(a - b).max() < 0.1, (t, np.abs(a - b).max())
        for policy in (fp32, int8):
            policy.executed(int(prev[t + 1]) if t + 1 < STEPS else 0)

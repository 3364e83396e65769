"""The DINOv2 visual and T5 goal encoder options load from local directories (tiny random models built here:
nothing is downloaded), stay frozen, and plug into the same policy."""

import pytest
import torch

pytest.importorskip("transformers")
from transformers import Dinov2Config, Dinov2Model, PreTrainedTokenizerFast, T5Config, T5EncoderModel

from flare_sim import GOAL_WORDS
from flare_training.inputs import gridhouse_tokenizer
from flare_training.model import ActorCritic, ModelConfig


@pytest.fixture(scope="module")
def dinov2_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("dinov2")
    config = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                          image_size=28, patch_size=14)  # fmt: skip
    Dinov2Model(config).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers

    path = tmp_path_factory.mktemp("t5")
    words = ["<pad>", "</s>", "<unk>", *GOAL_WORDS]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(path)
    config = T5Config(vocab_size=len(words), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    T5EncoderModel(config).save_pretrained(path)
    return str(path)


def test_dinov2_and_t5_options_build_a_working_frozen_policy(dinov2_dir, t5_dir):
    tokenizer = gridhouse_tokenizer()
    config = ModelConfig(d_model=32, heads=4, layers=1, visual="dinov2", dinov2_path=dinov2_dir, fusion="pooled",
                         goal_encoder="t5", t5_path=t5_dir, vocab_size=len(tokenizer))  # fmt: skip
    model = ActorCritic(config, {"nav": (28, 28)}, tokenizer.vocab)
    frozen = [p for name, p in model.named_parameters() if ".backbone." in name or ".t5." in name]
    assert frozen and not any(p.requires_grad for p in frozen)
    goal = torch.from_numpy(tokenizer.encode_batch(["go to the red ball", "pick up the blue key"]))
    batch = {
        "visual": model.visual({"nav": torch.randn(2, 3, 3, 28, 28)}),
        "goal": goal[:, None].expand(2, 3, -1),
        "prev_action": torch.zeros(2, 3, dtype=torch.long),
        "holding": torch.zeros(2, 3, dtype=torch.long),
        "step": torch.arange(3)[None].repeat(2, 1),
        "episode": torch.zeros(2, 3, dtype=torch.long),
    }
    logits, values = model.sequence(batch)
    assert logits.shape == (2, 3, 20) and values.shape == (2, 3) and torch.isfinite(logits).all()
    # Different goals give different goal features; the same goal is encoded once.
    feats = model.actor.tokens.goal(goal)
    assert not torch.allclose(feats[0], feats[1])
    assert len(model.actor.tokens.goal._memo) == 2
    model.train()
    assert not model.visual.encoders["nav"].backbone.training and not model.actor.tokens.goal.t5.training


def test_pretrained_options_refuse_missing_paths():
    with pytest.raises(ValueError, match="dinov2_path"):
        ModelConfig(visual="dinov2")
    with pytest.raises(ValueError, match="t5_path"):
        ModelConfig(goal_encoder="t5")


def test_dinov2_position_table_is_resized_once_and_exported_as_a_constant(dinov2_dir, tmp_path):
    import onnx

    from flare_training.export import OnnxStep, example_inputs, export_graph, io_names
    from flare_training.model import Dinov2Encoder

    encoder = Dinov2Encoder(dinov2_dir, 8)
    plain = Dinov2Model.from_pretrained(dinov2_dir).eval()  # the library's own, re-interpolating every call
    images = torch.randn(2, 3, 28, 42)  # non-square: the table must be resized to 2 x 3 patches
    with torch.no_grad():
        expected = encoder.proj(plain(pixel_values=images).pooler_output)
        torch.testing.assert_close(encoder(images), expected)
        torch.testing.assert_close(encoder(images), expected)  # second call: from the cache
    tokenizer = gridhouse_tokenizer()
    config = ModelConfig(d_model=16, heads=2, layers=1, visual="dinov2", dinov2_path=dinov2_dir, fusion="pooled",
                         vocab_size=len(tokenizer))  # fmt: skip
    model = ActorCritic(config, {"nav": (28, 42)}).eval()
    step = OnnxStep(model).eval()
    path = export_graph(step, example_inputs(model, past_len=1), tmp_path / "step.onnx", *io_names(step.cameras, 1))
    assert "Resize" not in {node.op_type for node in onnx.load(path).graph.node}

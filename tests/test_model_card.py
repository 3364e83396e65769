"""Model-card validation: a good card round-trips; every bad card is refused with messages that name the fault."""

import copy
import json

import pytest

from flare_core import ACTION_NAMES, ModelCard, ModelCardError, PreprocessConfig, load_model_card

GOOD = {
    "schema_version": 1,
    "name": "tiny",
    "action_names": list(ACTION_NAMES),
    "embodiments": ["gridhouse", "stretch_re1"],
    "cameras": [
        {"name": "nav", "preprocessing": PreprocessConfig(56, 56).to_dict()},
        {"name": "manip", "preprocessing": PreprocessConfig(48, 48).to_dict()},
    ],
    "goal_tokenizer": {"type": "word", "vocab": ["<pad>", "<unk>", "go", "to"], "max_tokens": 16},
    "cache": {"layers": 2, "heads": 4, "head_dim": 16, "max_context": 128},
    "opset": 17,
    "provenance": {"env": "gridhouse", "tasks": ["objectnav"], "env_steps": 1000, "success": {"objectnav": 0.5}},
}


def _with(path: str, value):
    card = copy.deepcopy(GOOD)
    *parents, leaf = path.split(".")
    node = card
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return card


_DELETE = object()


def test_good_card_round_trips(tmp_path):
    card = ModelCard.from_dict(GOOD)
    assert card.cache.heads == 4 and card.cameras[1].preprocessing.height == 48
    card.save(tmp_path)
    assert load_model_card(tmp_path) == card
    # Fields added after a card was written (cache layout and dtype, weight type) read as their defaults.
    assert json.loads((tmp_path / "model.json").read_text()) == GOOD | {
        "provenance": GOOD["provenance"] | {"command": "", "lineage": []},
        "cache": GOOD["cache"] | {"layout": "concat", "dtype": "float32"},
        "weights": "float32",
    }


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("action_names", list(ACTION_NAMES[:12]), "action_names: the card has 12 actions"),
        ("action_names", list(reversed(ACTION_NAMES)), "would mean different motions"),
        ("embodiments", ["spot"], "unknown embodiment 'spot'"),
        ("cache.heads", -1, "cache.heads: must be a positive integer, got -1"),
        ("cache.layers", _DELETE, "cache.layers: missing"),
        ("cameras.0.preprocessing.rotate_cw", 45, r"cameras\[0\].preprocessing: invalid preprocessing: rotate_cw"),
        ("cameras.1.name", "nav", "camera names must be unique"),
        ("goal_tokenizer.vocab", ["go", "to"], "must start with '<pad>', '<unk>'"),
        ("schema_version", 7, "reads version 1, the card says 7"),
        ("provenance.success", {"objectnav": 1.5}, "success rate in \\[0, 1\\]"),
        ("provenance.lineage", [{"run": "runs/bc", "kind": "bc", "env_steps": -1}], r"lineage\[0\].env_steps: must"),
        ("provenance.lineage", {"run": "runs/bc"}, "provenance.lineage: must be a list"),
        ("opset", "17", "opset: must be a positive integer"),
    ],
)
def test_bad_cards_are_refused_naming_the_problem(path, value, message):
    with pytest.raises(ModelCardError, match=message):
        ModelCard.from_dict(_with(path, value))


def test_every_problem_is_listed_at_once():
    card = _with("cache.heads", 0)
    card["embodiments"] = ["spot"]
    with pytest.raises(ModelCardError, match=r"2 problem\(s\)") as err:
        ModelCard.from_dict(card)
    assert "cache.heads" in str(err.value) and "spot" in str(err.value)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ModelCardError, match="model card not found"):
        load_model_card(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelCardError, match="not valid JSON"):
        load_model_card(tmp_path)
    (tmp_path / "model.json").write_text("[1, 2]")
    with pytest.raises(ModelCardError, match="must be a JSON object"):
        load_model_card(tmp_path)

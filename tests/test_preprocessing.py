"""The one preprocessing function: shapes, values, rotation, crops, and clear errors on bad frames."""

import numpy as np
import pytest

from flare_core import FrameError, PreprocessConfig, preprocess


def test_output_shape_dtype_and_normalisation():
    frame = np.full((120, 160, 3), 255, dtype=np.uint8)
    out = preprocess(frame, PreprocessConfig(height=56, width=64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0)))
    assert out.shape == (3, 56, 64) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out[:, 0, 0], [2.0, 1.0, 0.5])


def test_rotation_is_clockwise():
    frame = np.zeros((4, 6, 3), dtype=np.uint8)
    frame[0, 0] = 255  # top-left marker
    out = preprocess(frame, PreprocessConfig(height=6, width=4, rotate_cw=90, mean=(0, 0, 0), std=(1, 1, 1)))
    assert out.shape == (3, 6, 4)
    assert out[0, 0, 3] == 1.0 and out[0].sum() == 1.0  # top-left moves to top-right


def test_crop_removes_fractions_of_each_side():
    frame = np.zeros((100, 100, 3), dtype=np.uint8)
    frame[:10] = 255  # a bright band that the top crop removes
    config = PreprocessConfig(height=90, width=100, crop_top=0.1, mean=(0, 0, 0), std=(1, 1, 1))
    assert preprocess(frame, config).max() == 0.0


def test_config_round_trips_through_a_dict():
    config = PreprocessConfig(height=224, width=384, rotate_cw=90, crop_left=0.1, mean=(0.485, 0.456, 0.406))
    assert PreprocessConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((8, 8, 3), dtype=np.float32), "uint8 RGB pixels, got dtype float32"),
        (np.zeros((8, 8), dtype=np.uint8), r"H x W x 3 RGB image, got shape \(8, 8\)"),
        (np.zeros((8, 8, 4), dtype=np.uint8), r"got shape \(8, 8, 4\)"),
        ([[0, 0, 0]], "expected a numpy image, got list"),
        (np.zeros((1, 8, 3), dtype=np.uint8), "too small"),
    ],
)
def test_bad_frames_are_refused_clearly(frame, message):
    with pytest.raises(FrameError, match=f"nav: .*{message}"):
        preprocess(frame, PreprocessConfig(), camera="nav")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rotate_cw": 45}, "rotate_cw"),
        ({"crop_top": 0.6, "crop_bottom": 0.5}, "whole frame"),
        ({"height": 0}, "height"),
    ],
)
def test_bad_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PreprocessConfig(**kwargs)


def test_goal_tokenizer_round_trips_through_the_card_spec():
    from flare_core import GoalTokenizer
    from flare_sim import GOAL_WORDS

    tok = GoalTokenizer.from_words(GOAL_WORDS, max_tokens=16)
    ids = tok.encode("Go to the red ball, then go to the blue key")
    assert ids.shape == (16,) and ids.dtype == np.int64
    assert (ids[:12] > 1).all() and (ids[12:] == 0).all()  # every word known, then padding
    assert tok.encode("go to the zebra")[3] == 1  # unknown word
    assert GoalTokenizer.from_spec(tok.spec()).vocab == tok.vocab


@pytest.mark.parametrize(
    "config",
    [PreprocessConfig(16, 16), PreprocessConfig(8, 12, rotate_cw=270, crop_left=0.25, std=(0.2, 0.3, 0.4))],
)
def test_batch_preprocessing_equals_per_frame(config):
    from flare_core import preprocess_batch

    frames = np.random.default_rng(0).integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)
    expected = np.stack([preprocess(f, config) for f in frames])
    np.testing.assert_array_equal(preprocess_batch(frames, config), expected)
    with pytest.raises(FrameError, match="uint8"):
        preprocess_batch(frames.astype(np.float64), config)


def test_spoc_camera_is_spocs_crop_and_clip_normalisation():
    from flare_core.preprocessing import CLIP_MEAN, CLIP_STD, SPOC_RENDER, spoc_camera

    frame = np.random.default_rng(0).integers(0, 256, (*SPOC_RENDER, 3), dtype=np.uint8)
    ours = preprocess(frame, spoc_camera())
    cropped = frame[:, 6:-6].astype(np.float64) / 255.0  # SPOC: event.frame[:, 6:-6], /255, CLIP mean/std
    spoc = ((cropped - np.array(CLIP_MEAN)) / np.array(CLIP_STD)).transpose(2, 0, 1)
    assert ours.shape == (3, 224, 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, spoc, atol=1e-5)


def test_a_stretch_head_camera_frame_takes_the_same_path_centre_cropped_not_stretched():
    """Stretch's head RealSense publishes 1280 x 720 from a mount turned 90 deg: the camera node turns it
    upright (720 x 1280, the robot's YAML) and the card's SPOC preprocessing crops its sides by SPOC's
    fraction, then the centre to the model's 384 x 224 aspect, and resizes; nothing is stretched."""
    import cv2

    from flare_core.preprocessing import CLIP_MEAN, CLIP_STD, spoc_camera
    from flare_ros.camera_node import adjust

    scene = np.random.default_rng(1).integers(0, 256, (1280, 720, 3), dtype=np.uint8)  # upright view
    published = np.ascontiguousarray(np.rot90(scene, k=1))  # what the sideways sensor delivers: 720 x 1280
    assert published.shape == (720, 1280, 3)
    upright = adjust(published, 90, 0, 0)
    np.testing.assert_array_equal(upright, scene)
    ours = preprocess(upright, spoc_camera())
    side = round(720 * 6 / 396)  # 11 px, SPOC's 6 of 396
    width = 720 - 2 * side  # 698
    rows = round(width * 224 / 384)  # 407: the model's aspect
    top = (1280 - rows) // 2
    window = scene[top : top + rows, side : side + width]
    expected = cv2.resize(window, (384, 224), interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0
    expected = ((expected - np.array(CLIP_MEAN)) / np.array(CLIP_STD)).transpose(2, 0, 1)
    assert ours.shape == (3, 224, 384)
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_keep_aspect_trims_whichever_side_is_too_long():
    wide = np.zeros((100, 400, 3), dtype=np.uint8)
    wide[:, :100] = 255  # a band at the left edge, removed by the centre crop to 1:2
    config = PreprocessConfig(height=50, width=100, mean=(0, 0, 0), std=(1, 1, 1), keep_aspect=True)
    assert preprocess(wide, config).max() == 0.0
    stretched = preprocess(wide, PreprocessConfig(height=50, width=100, mean=(0, 0, 0), std=(1, 1, 1)))
    assert stretched.max() == 1.0  # without keep_aspect the frame is squeezed whole


def test_frames_stored_resampled_give_the_same_model_inputs():
    """BC keeps AI2-THOR demonstrations resampled to the model's size: preprocessing them again must give what
    preprocessing the rendered frame gives (a card that neither rotates nor crops)."""
    from flare_core.preprocessing import CLIP_MEAN, CLIP_STD, resample

    config = PreprocessConfig(56, 96, mean=CLIP_MEAN, std=CLIP_STD, keep_aspect=True)
    frame = np.random.default_rng(0).integers(0, 256, (224, 384, 3), dtype=np.uint8)
    small = resample(frame, config)
    assert small.shape == (56, 96, 3) and small.dtype == np.uint8
    np.testing.assert_array_equal(preprocess(small, config), preprocess(frame, config))

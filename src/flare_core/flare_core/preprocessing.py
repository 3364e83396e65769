"""Observation preprocessing: the one function that turns a camera frame into model input.

Training, export and the robot all call `preprocess` with the `PreprocessConfig` recorded in the model card,
so a zero-shot policy sees on the robot exactly what it saw in simulation. Order: rotate, crop, resize,
centre-crop to the model's aspect ratio (`keep_aspect`), resize, scale to [0, 1], normalise, HWC -> CHW.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np


class FrameError(ValueError):
    """A camera frame that cannot be fed to the policy (wrong dtype, shape or channel count)."""


@dataclass(frozen=True)
class PreprocessConfig:
    """How one camera's frames become a float32 C x H x W tensor.

    crop_* are fractions of the (rotated) frame removed from each side, so the same card works whatever
    the camera's native resolution. rotate_cw is in degrees (Stretch's head camera is mounted 90 deg off).
    keep_aspect: after the crops, a frame whose shape differs from height x width is centre-cropped to the
    model's aspect ratio before resizing, never stretched (a camera with another aspect than the simulator's:
    a Stretch's head RealSense, rotated upright, is 720 x 1280 where SPOC's frames are 384 x 224).
    """

    height: int = 56
    width: int = 56
    rotate_cw: int = 0
    crop_top: float = 0.0
    crop_bottom: float = 0.0
    crop_left: float = 0.0
    crop_right: float = 0.0
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    keep_aspect: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.height < 1 or self.width < 1:
            problems.append(f"height and width must be >= 1, got {self.height}x{self.width}")
        if self.rotate_cw not in (0, 90, 180, 270):
            problems.append(f"rotate_cw must be 0, 90, 180 or 270, got {self.rotate_cw}")
        crops = (self.crop_top, self.crop_bottom, self.crop_left, self.crop_right)
        if any(not 0.0 <= c < 1.0 for c in crops):
            problems.append(f"crop fractions must be in [0, 1), got {crops}")
        if self.crop_top + self.crop_bottom >= 1.0 or self.crop_left + self.crop_right >= 1.0:
            problems.append("crops remove the whole frame")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            problems.append(f"mean and std need 3 entries each, std > 0; got mean={self.mean} std={self.std}")
        if problems:
            raise ValueError("invalid preprocessing: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)}; known: {sorted(known)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)


# SPOC/FLaRe frames: AI2-THOR renders 396 x 224, `[:, 6:-6]` crops 6 px each side to 224 x 384, then /255 and
# CLIP's mean/std (SPOC's DINO_RGB_MEANS / DINO_RGB_STDS). DINOv2 then sees the central 224 x 378 (model side).
SPOC_RENDER = (224, 396)  # height, width
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def spoc_camera() -> PreprocessConfig:
    """SPOC/FLaRe's preprocessing of one camera's 396 x 224 frame, as the preprocessing of a model card."""
    side = 6 / SPOC_RENDER[1]
    return PreprocessConfig(
        height=224, width=384, crop_left=side, crop_right=side, mean=CLIP_MEAN, std=CLIP_STD, keep_aspect=True
    )


def check_frame(frame: object, camera: str = "camera") -> np.ndarray:
    """Return the frame as an H x W x 3 uint8 array or raise FrameError saying what is wrong with it."""
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"{camera}: expected a numpy image, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise FrameError(f"{camera}: expected uint8 RGB pixels, got dtype {frame.dtype} (convert to rgb8 first)")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError(f"{camera}: expected an H x W x 3 RGB image, got shape {frame.shape}")
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise FrameError(f"{camera}: frame of shape {frame.shape} is too small to use")
    return frame


def preprocess(frame: np.ndarray, config: PreprocessConfig, camera: str = "camera") -> np.ndarray:
    """Frame (H x W x 3 uint8 RGB) -> normalised float32 3 x height x width."""
    img = resample(frame, config, camera)
    return _normalise(np.ascontiguousarray(img).transpose(2, 0, 1)[None], config)[0]


def resample(frame: np.ndarray, config: PreprocessConfig, camera: str = "camera") -> np.ndarray:
    """`preprocess`'s geometric steps alone: uint8 height x width x 3. Where the card neither rotates nor crops,
    resampling its own output again changes nothing, so frames may be stored resampled (BC demonstrations)."""
    img = check_frame(frame, camera)
    if config.rotate_cw:
        img = np.rot90(img, k=-config.rotate_cw // 90)
    h, w = img.shape[:2]
    top, bottom = round(h * config.crop_top), h - round(h * config.crop_bottom)
    left, right = round(w * config.crop_left), w - round(w * config.crop_right)
    img = img[top:bottom, left:right]
    if config.keep_aspect:
        img = _crop_to_aspect(img, config.height / config.width)
    if img.shape[:2] != (config.height, config.width):
        img = cv2.resize(np.ascontiguousarray(img), (config.width, config.height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def _crop_to_aspect(img: np.ndarray, aspect: float) -> np.ndarray:
    """The largest centred window of `img` with height / width == aspect (to the pixel)."""
    h, w = img.shape[:2]
    if round(w * aspect) < h:  # too tall: trim top and bottom
        keep = max(1, round(w * aspect))
        top = (h - keep) // 2
        return img[top : top + keep]
    keep = max(1, round(h / aspect))
    left = (w - keep) // 2
    return img[:, left : left + keep]


def normalisation(config: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per channel float32 (scale, offset) [3]: a normalised value is `float32(pixel) * scale + offset`, two
    float32 operations in that order, so code on another array library doing the same gets the same bits."""
    std = np.asarray(config.std, dtype=np.float64)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    offset = (-np.asarray(config.mean, dtype=np.float64) / std).astype(np.float32)
    return scale, offset


def _normalise(chw: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """uint8 [B, 3, H, W] -> float32 ((x / 255) - mean) / std, as one scale-and-offset pass."""
    scale, offset = normalisation(config)
    out = np.ascontiguousarray(chw).astype(np.float32)
    out *= scale[:, None, None]
    out += offset[:, None, None]
    return out


def preprocess_batch(frames: np.ndarray, config: PreprocessConfig, camera: str = "camera") -> np.ndarray:
    """`preprocess` over a batch [B, H, W, 3] -> [B, 3, height, width] (identical results): `resample_batch`,
    then the normalisation once for the whole batch."""
    return _normalise(resample_batch(frames, config, camera).transpose(0, 3, 1, 2), config)


def resample_batch(frames: np.ndarray, config: PreprocessConfig, camera: str = "camera") -> np.ndarray:
    """`resample` over a batch [B, H, W, 3] -> uint8 [B, height, width, 3]; the geometric steps run per frame
    only when the card asks for them (frames already at its size pass through as they are)."""
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise FrameError(f"{camera}: expected a batch of frames B x H x W x 3, got shape {frames.shape}")
    if len(frames) == 0:
        return np.zeros((0, config.height, config.width, 3), dtype=np.uint8)
    check_frame(frames[0], camera)
    crops = (config.crop_top, config.crop_bottom, config.crop_left, config.crop_right)
    geometric = config.rotate_cw or any(crops) or config.keep_aspect
    if geometric or frames.shape[1:3] != (config.height, config.width):
        return np.stack([resample(f, config, camera) for f in frames])
    return frames

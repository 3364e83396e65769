"""Raw image buffers (as `sensor_msgs/Image` carries them) <-> RGB numpy frames, without rclpy.

The policy node, the camera node and bag replay all decode frames here, so a frame that one of them accepts
the others accept too, and a wrong encoding or a truncated buffer is refused with the same clear message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flare_core.preprocessing import FrameError

# encoding -> (channels, how to get RGB from it)
_COLOUR = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}
_HINTS = {
    "16UC1": "a depth image",
    "32FC1": "a depth image",
    "mono8": "a greyscale image",
    "mono16": "a greyscale image",
    "yuv422": "a YUV image",
    "yuv422_yuy2": "a YUV image",
}


@dataclass(frozen=True)
class RawImage:
    """The fields of a sensor_msgs/Image that decoding needs."""

    height: int
    width: int
    encoding: str
    step: int
    data: bytes
    is_bigendian: bool = False

    @classmethod
    def from_msg(cls, msg) -> RawImage:
        """From a sensor_msgs/Image as rclpy or rosbags deliver it (the same field names)."""
        return cls(msg.height, msg.width, msg.encoding, msg.step, bytes(msg.data), bool(msg.is_bigendian))


def header_stamp_ns(msg) -> int:
    """A stamped message's header time in nanoseconds (rclpy or rosbags message)."""
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def decode_rgb(raw: RawImage, source: str = "image") -> np.ndarray:
    """A uint8 H x W x 3 RGB array from a raw image, refusing anything the policy cannot take as colour."""
    encoding = raw.encoding.lower()
    if encoding not in _COLOUR:
        hint = _HINTS.get(raw.encoding) or _HINTS.get(encoding)
        what = f" ({hint}: point the policy at the colour stream)" if hint else ""
        raise FrameError(f"{source}: encoding {raw.encoding!r} is not supported{what}; use one of {', '.join(_COLOUR)}")
    channels = _COLOUR[encoding]
    if raw.height < 1 or raw.width < 1:
        raise FrameError(f"{source}: empty image ({raw.height} x {raw.width})")
    row = raw.width * channels
    if raw.step < row:
        raise FrameError(f"{source}: step {raw.step} is shorter than a row of {raw.width} {encoding} pixels ({row})")
    if len(raw.data) < raw.step * raw.height:
        raise FrameError(
            f"{source}: {len(raw.data)} bytes of data, {raw.step * raw.height} expected for "
            f"{raw.height} rows of {raw.step} bytes (truncated message?)"
        )
    buffer = np.frombuffer(raw.data, dtype=np.uint8, count=raw.step * raw.height).reshape(raw.height, raw.step)
    pixels = buffer[:, :row].reshape(raw.height, raw.width, channels)
    if encoding.startswith("bgr"):
        pixels = pixels[..., 2::-1]
    return np.ascontiguousarray(pixels[..., :3])


def encode_rgb(frame: np.ndarray, source: str = "frame") -> RawImage:
    """An rgb8 raw image from a uint8 H x W x 3 array."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError(f"{source}: expected uint8 H x W x 3 RGB, got {frame.dtype} {frame.shape}")
    frame = np.ascontiguousarray(frame)
    return RawImage(frame.shape[0], frame.shape[1], "rgb8", frame.shape[1] * 3, frame.tobytes())

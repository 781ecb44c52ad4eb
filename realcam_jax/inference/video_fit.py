"""Fitting any source video to the model: frame size, frame rate and length.

Policies (docs/streaming_inputs.md):

- Size (`fit_frames`): scale preserving the aspect ratio so the image covers
  the model size and centre-crop the excess ("crop", default), or fit inside it
  and letterbox-pad ("pad"); the returned `FitTransform` maps pixel
  coordinates and intrinsics.
- Frame rate (`resample_fps`, `iter_resampled`): the model runs at a fixed
  `model_fps`; output frame k shows the source frame nearest to time
  k / fps_out, so faster sources are subsampled and slower ones repeat frames.
- Length (`fit_length`): Wan's causal VAE takes 1 + 4k frames for a clip; a
  stream is a first chunk of `first_frames` then chunks of `chunk_frames`. A
  partial last chunk is padded by repeating the last frame (the outputs of
  padded frames are dropped), or dropped with `policy="drop"`.

Frames are `uint8[T, H, W, 3]` RGB.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Iterable, Iterator

import cv2
import numpy as np

from realcam_jax.camera.intrinsics import crop_intrinsics, scale_intrinsics

__all__ = ["FitTransform", "LengthPlan", "apply_length_plan", "check_frames", "fit_frames",
           "fit_length", "iter_resampled", "resample_fps"]


def check_frames(frames, what="frames", error=ValueError) -> np.ndarray:
  """`uint8[T, H, W, 3]` view of `[T, H, W, 3]` or `[H, W, 3]` RGB frames, else `error`."""
  a = np.asarray(frames)
  if a.ndim == 3:
    a = a[None]
  if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
    raise error(f"{what}: expected uint8 RGB frames [T, H, W, 3] or [H, W, 3], got "
                f"{a.dtype}{list(a.shape)}" + (
                    " (convert floats in [0, 1] with (x * 255).round().astype(np.uint8))"
                    if np.issubdtype(a.dtype, np.floating) else ""))
  return a


# ------------------------------------------------------------ fitting size
@dataclasses.dataclass(frozen=True)
class FitTransform:
  """How `fit_frames` mapped the source image: `u_out = u_in * scale_x + offset_x` (same for v).

  Pixel coordinates are continuous, pixel (row i, col j) centred at
  `(j + 0.5, i + 0.5)` (the `realcam_jax.camera` convention).

  Attributes:
    mode: "crop" or "pad".
    in_size, resized_size, out_size: `(width, height)` of the source, the scaled
      image and the output.
    scale_x, scale_y: resized / source size per axis (equal up to rounding).
    offset_x, offset_y: minus the crop origin ("crop") or the padding on the
      left / top ("pad"), in output pixels.
  """
  mode: str
  in_size: tuple[int, int]
  resized_size: tuple[int, int]
  out_size: tuple[int, int]
  scale_x: float
  scale_y: float
  offset_x: int
  offset_y: int

  def apply_points(self, uv) -> np.ndarray:
    """Maps source pixel coordinates `[..., 2]` (u, v) to output coordinates."""
    uv = np.asarray(uv, np.float64)
    return uv * np.array([self.scale_x, self.scale_y]) + np.array([self.offset_x, self.offset_y])

  def apply_intrinsics(self, K):
    """Source pixel intrinsics `[..., 3, 3]` -> intrinsics of the output frames."""
    return crop_intrinsics(scale_intrinsics(K, self.scale_x, self.scale_y),
                           -self.offset_x, -self.offset_y)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def fit_frames(frames, height: int, width: int, mode: str = "crop",
               pad_value: int = 0) -> tuple[np.ndarray, FitTransform]:
  """Fits frames of any size to `height x width`, preserving the aspect ratio.

  "crop": scale by `max(height / H, width / W)` so the image covers the target,
  then cut the centre (the excess is split evenly, the extra pixel goes right /
  down). "pad": scale by `min(...)` so it fits inside, then centre it on
  `pad_value` borders (letterbox / pillarbox). Downscaling uses area
  averaging, upscaling bilinear interpolation.

  Args:
    frames: `uint8[T, H, W, 3]` or `[H, W, 3]`.
    height, width: output size.
    mode: "crop" (default) or "pad".

  Returns:
    (`uint8[T, height, width, 3]` (or `[height, width, 3]`), FitTransform).
  """
  single = np.ndim(frames) == 3
  frames = check_frames(frames, "fit_frames input")
  if mode not in ("crop", "pad"):
    raise ValueError(f"fit_frames: unknown mode {mode!r}: expected 'crop' or 'pad'")
  if int(height) < 1 or int(width) < 1:
    raise ValueError(f"fit_frames: output size must be positive, got {height}x{width}")
  h, w = frames.shape[1:3]
  pick = max if mode == "crop" else min
  s = pick(height / h, width / w)
  rw, rh = max(1, round(w * s)), max(1, round(h * s))
  if mode == "crop":
    rw, rh = max(rw, width), max(rh, height)
  else:
    rw, rh = min(rw, width), min(rh, height)
  interp = cv2.INTER_AREA if rw * rh < w * h else cv2.INTER_LINEAR
  resized = (frames if (rw, rh) == (w, h) else
             np.stack([cv2.resize(f, (rw, rh), interpolation=interp) for f in frames]))
  if mode == "crop":
    left, top = (rw - width) // 2, (rh - height) // 2
    out = resized[:, top:top + height, left:left + width]
    ox, oy = -left, -top
  else:
    left, top = (width - rw) // 2, (height - rh) // 2
    out = np.full((len(frames), height, width, 3), pad_value, np.uint8)
    out[:, top:top + rh, left:left + rw] = resized
    ox, oy = left, top
  tf = FitTransform(mode, (w, h), (rw, rh), (int(width), int(height)), rw / w, rh / h, ox, oy)
  out = np.ascontiguousarray(out)
  return (out[0] if single else out), tf


# ------------------------------------------------------- frame rate, length
def _rate(fps, what) -> Fraction:
  if not (isinstance(fps, (int, float, Fraction)) and math.isfinite(fps) and fps > 0):
    raise ValueError(f"{what} must be a positive number of frames per second, got {fps!r}")
  return Fraction(fps).limit_denominator(100000)


def resample_fps(num_frames_in: int, fps_in: float, fps_out: float) -> np.ndarray:
  """Source frame index `int[N]` for each output frame at `fps_out`.

  Output frame k (time k / fps_out) shows the nearest source frame
  `floor(k * fps_in / fps_out + 1/2)` (exact rational arithmetic), clipped to
  the last frame; `N = ceil(num_frames_in * fps_out / fps_in)` keeps the
  duration. 30 -> 15 takes every 2nd frame; 10 -> 15 repeats every 2nd frame.
  """
  if int(num_frames_in) != num_frames_in or num_frames_in < 0:
    raise ValueError(f"num_frames_in must be an integer >= 0, got {num_frames_in!r}")
  r_in, r_out = _rate(fps_in, "fps_in"), _rate(fps_out, "fps_out")
  n_out = math.ceil(Fraction(int(num_frames_in)) * r_out / r_in)
  # floor(k * r_in / r_out + 1/2) with integers: floor((2 k a + b) / (2 b)), a/b = r_in/r_out.
  ratio = r_in / r_out
  k = np.arange(n_out, dtype=np.int64)
  idx = (2 * k * ratio.numerator + ratio.denominator) // (2 * ratio.denominator)
  return np.minimum(idx, max(int(num_frames_in) - 1, 0))


def iter_resampled(frames: Iterable[np.ndarray], fps_in: float,
                   fps_out: float) -> Iterator[np.ndarray]:
  """Streaming `resample_fps`: yields the same frames for a stream of unknown length."""
  ratio = _rate(fps_in, "fps_in") / _rate(fps_out, "fps_out")
  k, n_in, last = 0, 0, None
  for i, frame in enumerate(frames):
    n_in, last = i + 1, frame
    while (2 * k * ratio.numerator + ratio.denominator) // (2 * ratio.denominator) == i:
      yield frame
      k += 1
  while last is not None and k < math.ceil(n_in / ratio):
    yield last
    k += 1


@dataclasses.dataclass(frozen=True)
class LengthPlan:
  """How a stream of `frames_in` frames is cut into model chunks.

  Attributes:
    frames_in: source frames.
    frames_model: frames the model processes: `first_frames + chunks * chunk_frames`.
    padded: copies of the last frame appended (policy "pad"); their outputs are dropped.
    dropped: trailing source frames not processed (policy "drop").
    chunks: chunks after the first.
    latent_frames: `1 + (first_frames - 1) / temporal + chunks * chunk_frames / temporal`.
  """
  frames_in: int
  frames_model: int
  padded: int
  dropped: int
  chunks: int
  latent_frames: int


def fit_length(num_frames: int, temporal: int = 4, chunk_frames: int | None = None,
               first_frames: int = 1, policy: str = "pad") -> LengthPlan:
  """Plans the model length of a stream (Wan causal VAE rule).

  A whole clip has `1 + temporal * k` frames; a stream is a first chunk of
  `first_frames` (1 + a multiple of `temporal`) and then chunks of
  `chunk_frames` (a multiple of `temporal`; default `temporal`). "pad" repeats
  the last frame up to the next whole chunk (outputs for padded frames are
  dropped afterwards, so the output has `num_frames` frames); "drop" cuts the
  partial last chunk (never below the first chunk).
  """
  chunk_frames = temporal if chunk_frames is None else int(chunk_frames)
  if temporal < 1 or chunk_frames < temporal or chunk_frames % temporal:
    raise ValueError(f"chunk_frames must be a positive multiple of temporal={temporal}, got "
                     f"{chunk_frames}")
  if first_frames < 1 or (first_frames - 1) % temporal:
    raise ValueError(f"first_frames must be 1 + a multiple of temporal={temporal}, got "
                     f"{first_frames}")
  if policy not in ("pad", "drop"):
    raise ValueError(f"unknown length policy {policy!r}: expected 'pad' or 'drop'")
  if int(num_frames) < 1:
    raise ValueError(f"a video needs at least 1 frame, got {num_frames}")
  n = int(num_frames)
  rest = max(n - first_frames, 0)
  chunks = -(-rest // chunk_frames) if policy == "pad" else rest // chunk_frames
  used = first_frames + chunks * chunk_frames
  return LengthPlan(n, used, max(used - n, 0), max(n - used, 0), chunks,
                    1 + (first_frames - 1) // temporal + chunks * chunk_frames // temporal)


def apply_length_plan(frames, plan: LengthPlan) -> np.ndarray:
  """Pads (repeating the last frame) or trims `[T, ...]` frames to `plan.frames_model`."""
  frames = np.asarray(frames)
  if len(frames) != plan.frames_in:
    raise ValueError(f"the plan is for {plan.frames_in} frames, got {len(frames)}")
  if plan.padded:
    return np.concatenate([frames, np.repeat(frames[-1:], plan.padded, axis=0)])
  return frames[:plan.frames_model]

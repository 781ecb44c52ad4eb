"""Input rules of the causal VAE and the one policy for inputs that break them.

Policy: **strict**. `encode`/`decode` and the streaming functions never crop or
pad silently; a video whose frame size is not a multiple of the spatial factor
(8 for Wan), whose frame count is not `1 + temporal*k` (1 + 4k for Wan), or that
does not have the expected channels raises `VAEInputError` naming the nearest
accepted sizes. Callers that take arbitrary user video (the render CLI) call
`fit_video` first, which center-crops/pads to the nearest accepted size and says
so in its docstring.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np


class VAEInputError(ValueError):
  """A video or latent tensor the VAE cannot take, with the accepted sizes in the message."""


def nearest_multiples(n: int, factor: int) -> list[int]:
  """Accepted sizes (positive multiples of `factor`) nearest to `n`: [n] if n is one."""
  if n > 0 and n % factor == 0:
    return [n]
  lo = (n // factor) * factor
  return [s for s in (lo, lo + factor) if s > 0]


def nearest_frame_counts(t: int, temporal: int) -> list[int]:
  """Accepted frame counts (1 + temporal*k, k >= 0) nearest to `t`."""
  if t >= 1 and (t - 1) % temporal == 0:
    return [t]
  lo = 1 + max(t - 1, 0) // temporal * temporal
  return sorted({lo, lo + temporal})


def _nearest(n: int, candidates: Sequence[int]) -> int:
  """The closest candidate; on a tie the smaller one (crop rather than invent pixels)."""
  return min(candidates, key=lambda c: (abs(c - n), c))


def check_video(video, *, spatial: int, temporal: int, channels: int,
                name: str = "video", first_chunk: bool | None = None) -> None:
  """Raises VAEInputError unless `video` is a float [B, T, H, W, channels] the VAE takes.

  first_chunk: None for a whole video (T = 1 + temporal*k); True for the first
  chunk of a stream (same rule); False for a later chunk (T = temporal*k, k >= 1).
  """
  shape = tuple(video.shape)
  if len(shape) != 5:
    raise VAEInputError(f"{name} must be [batch, frames, height, width, {channels}] "
                        f"(channels last), got shape {shape}")
  if not jnp.issubdtype(video.dtype, jnp.floating):
    raise VAEInputError(f"{name} has dtype {video.dtype}; expected floats in [-1, 1] "
                        f"(for uint8 frames use frames / 127.5 - 1)")
  b, t, h, w, c = shape
  if c != channels:
    raise VAEInputError(f"{name} has {c} channels (shape {shape}); the VAE takes {channels} "
                        f"(RGB, channels last: [batch, frames, height, width, {channels}])")
  bad = [(axis, n) for axis, n in (("height", h), ("width", w)) if n <= 0 or n % spatial]
  if bad:
    parts = [f"{axis} {n} (nearest accepted: "
             f"{' or '.join(map(str, nearest_multiples(n, spatial)))})" for axis, n in bad]
    raise VAEInputError(f"{name} frame size {h}x{w} is not a multiple of the VAE's spatial "
                        f"factor {spatial}: {'; '.join(parts)}. Crop/pad it, e.g. with "
                        f"realcam_jax.models.vae.fit_video")
  if first_chunk is False:
    if t < temporal or t % temporal:
      near = nearest_multiples(t, temporal)
      raise VAEInputError(f"{name} has {t} frames; a chunk after the first must have a multiple "
                          f"of {temporal} frames (nearest accepted: {' or '.join(map(str, near))})")
  elif t < 1 or (t - 1) % temporal:
    what = "the first chunk of a stream" if first_chunk else "a video"
    near = nearest_frame_counts(t, temporal)
    raise VAEInputError(f"{name} has {t} frames; {what} must have 1 + {temporal}*k frames "
                        f"(nearest accepted: {' or '.join(map(str, near))}). Trim/pad it, e.g. "
                        f"with realcam_jax.models.vae.fit_video")


def check_latents(latents, *, z_dim: int, name: str = "latents") -> None:
  """Raises VAEInputError unless `latents` is a float [B, F, h, w, z_dim] with F >= 1."""
  shape = tuple(latents.shape)
  if len(shape) != 5 or shape[-1] != z_dim or min(shape[1:4]) < 1:
    raise VAEInputError(f"{name} must be [batch, latent_frames>=1, height, width, {z_dim}] "
                        f"(channels last), got shape {shape}")
  if not jnp.issubdtype(latents.dtype, jnp.floating):
    raise VAEInputError(f"{name} has dtype {latents.dtype}; expected floats")


def fitted_size(height: int, width: int, frames: int, *, spatial: int = 8,
                temporal: int = 4) -> tuple[int, int, int]:
  """The (height, width, frames) `fit_video` produces for a video of this size."""
  return (_nearest(height, nearest_multiples(height, spatial)),
          _nearest(width, nearest_multiples(width, spatial)),
          _nearest(frames, nearest_frame_counts(frames, temporal)))


def _fit_axis(x, axis: int, size: int, *, center: bool):
  n = x.shape[axis]
  if n == size:
    return x
  if n > size:                                  # crop
    start = (n - size) // 2 if center else 0
    return np.take(x, np.arange(start, start + size), axis=axis)
  before = (size - n) // 2 if center else 0     # pad by repeating the edge
  pad = [(0, 0)] * x.ndim
  pad[axis] = (before, size - n - before)
  return np.pad(x, pad, mode="edge")


def fit_video(video, spatial: int = 8, temporal: int = 4) -> np.ndarray:
  """Center-crops/pads a video to the nearest size the VAE accepts.

  Args:
    video: [..., T, H, W, C] array (any dtype; NumPy or JAX).
    spatial: the VAE's spatial factor (H and W become multiples of it).
    temporal: the VAE's temporal factor (T becomes 1 + temporal*k).

  Returns:
    NumPy [..., T', H', W', C] with (H', W', T') = `fitted_size(H, W, T)`:
    each of H and W goes to the nearest multiple of `spatial` (ties: the smaller,
    i.e. crop), cropped centrally or padded on both sides by repeating the edge
    pixels; T goes to the nearest 1 + temporal*k (ties: fewer frames), dropping
    trailing frames or repeating the last frame (the start of the video is kept
    because the VAE is causal).
  """
  x = np.asarray(video)
  if x.ndim < 4:
    raise VAEInputError(f"video must be [..., frames, height, width, channels], got shape "
                        f"{x.shape}")
  t, h, w = x.shape[-4:-1]
  h2, w2, t2 = fitted_size(h, w, t, spatial=spatial, temporal=temporal)
  x = _fit_axis(x, x.ndim - 3, h2, center=True)
  x = _fit_axis(x, x.ndim - 2, w2, center=True)
  return _fit_axis(x, x.ndim - 4, t2, center=False)

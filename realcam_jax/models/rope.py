"""Wan's 3D rotary position embedding, split over (frame, height, width).

The head dim H is split into three parts, exactly as Wan / diffusers
`WanRotaryPosEmbed`: h_dim = w_dim = 2 * (H // 6), t_dim = H - h_dim - w_dim,
laid out [t | h | w]. Inside each part of size d, channel pairs (2i, 2i+1) are
rotated by angle pos * theta^(-2i/d) (complex multiplication on interleaved
pairs, diffusers `repeat_interleave_real=True`). Token (f, y, x) of a frame
grid uses positions (frame_pos[f], y, x).

Angles are computed in float64 with NumPy when the positions are concrete (as
diffusers and Wan do), in float32 when they are traced inside jit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def rope_split(head_dim: int) -> tuple[int, int, int]:
  """(t_dim, h_dim, w_dim) for a head dim, following Wan."""
  if head_dim % 2 or head_dim < 6:
    raise ValueError(f"3D RoPE needs an even head dim >= 6, got {head_dim} "
                     f"(dim / num_heads in the model config)")
  hw = 2 * (head_dim // 6)
  return head_dim - 2 * hw, hw, hw


def _inv_freq(dim: int, theta: float) -> np.ndarray:
  """float64[dim // 2]: theta^(-2i/dim)."""
  return 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))


def rope_angles(frame_pos, height: int, width: int, head_dim: int,
                theta: float = 10000.0) -> jax.Array | np.ndarray:
  """Rotation angles f32[F, P, H // 2] (or [B, F, P, H // 2] for frame_pos[B, F]).

  Args:
    frame_pos: int[F] or int[B, F] temporal position of each (token) frame.
    height: tokens per frame along y (latent height / patch height).
    width: tokens per frame along x.
    head_dim: H.
    theta: RoPE base.
  """
  t_dim, h_dim, w_dim = rope_split(head_dim)
  inv_t, inv_h, inv_w = (_inv_freq(d, theta) for d in (t_dim, h_dim, w_dim))
  try:
    pos, concrete = np.asarray(frame_pos, np.float64), True
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    pos, concrete = jnp.asarray(frame_pos, jnp.float32), False
  xp = np if concrete else jnp
  if pos.ndim not in (1, 2):
    raise ValueError(f"frame_pos must be int[F] or int[B, F], got shape {pos.shape}")
  ang_t = pos[..., None] * (inv_t if concrete else inv_t.astype(np.float32))   # [.., F, t/2]
  ang_h = np.arange(height, dtype=np.float64)[:, None] * inv_h                 # [h, h_dim/2]
  ang_w = np.arange(width, dtype=np.float64)[:, None] * inv_w                  # [w, w_dim/2]
  if not concrete:
    ang_h, ang_w = ang_h.astype(np.float32), ang_w.astype(np.float32)
  lead = pos.shape
  ang_t = xp.broadcast_to(ang_t[..., :, None, None, :], lead + (height, width, t_dim // 2))
  ang_h = xp.broadcast_to(ang_h[:, None, :], lead + (height, width, h_dim // 2))
  ang_w = xp.broadcast_to(ang_w[None, :, :], lead + (height, width, w_dim // 2))
  ang = xp.concatenate([ang_t, ang_h, ang_w], axis=-1)
  return ang.reshape(lead + (height * width, head_dim // 2))


def rope_cos_sin(frame_pos, height: int, width: int, head_dim: int,
                 theta: float = 10000.0) -> tuple[jax.Array, jax.Array]:
  """(cos, sin), each f32[T, H // 2] (or [B, T, H // 2]) with T = F * height * width."""
  ang = rope_angles(frame_pos, height, width, head_dim, theta)
  lead = ang.shape[:-3]
  shape = lead + (ang.shape[-3] * ang.shape[-2], ang.shape[-1])
  if isinstance(ang, np.ndarray):
    return (jnp.asarray(np.cos(ang).reshape(shape), jnp.float32),
            jnp.asarray(np.sin(ang).reshape(shape), jnp.float32))
  return jnp.cos(ang).reshape(shape), jnp.sin(ang).reshape(shape)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates interleaved channel pairs of x[B, T, N, H] by cos/sin f32[(B,) T, H // 2].

  Computed in f32, returned in x's dtype.
  """
  if cos.shape[-1] * 2 != x.shape[-1] or cos.shape[-2] != x.shape[1]:
    raise ValueError(f"RoPE tables of shape {cos.shape} do not fit x of shape {x.shape} "
                     f"[B, T, N, H]: expected [..., T={x.shape[1]}, H/2={x.shape[-1] // 2}]")
  cos = cos[:, :, None, :] if cos.ndim == 3 else cos[None, :, None, :]
  sin = sin[:, :, None, :] if sin.ndim == 3 else sin[None, :, None, :]
  pairs = x.astype(jnp.float32).reshape(x.shape[:-1] + (x.shape[-1] // 2, 2))
  x1, x2 = pairs[..., 0], pairs[..., 1]
  out = jnp.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
  return out.reshape(x.shape).astype(x.dtype)

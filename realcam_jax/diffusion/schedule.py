"""Noise levels for rectified flow (Wan convention).

sigma in [0, 1] is the noise fraction: `x_t = (1 - sigma) * x0 + sigma * noise`.
The network's timestep is `1000 * sigma`. A shift > 1 moves mass to high noise:
`shift_sigma(s) = shift * s / (1 + (shift - 1) * s)` (Wan uses shift 5 at 480p).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

NUM_TRAIN_TIMESTEPS = 1000.0


def shift_sigma(sigma, shift: float):
  """Warps sigma in [0, 1] by the sigma shift; identity for shift == 1."""
  sigma = jnp.asarray(sigma, jnp.float32)
  return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def sigma_to_timestep(sigma):
  return jnp.asarray(sigma, jnp.float32) * NUM_TRAIN_TIMESTEPS


def euler_sigmas(num_steps: int, shift: float) -> jax.Array:
  """f32[num_steps + 1]: shifted levels from 1 down to 0 for an Euler sampler."""
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  return shift_sigma(jnp.linspace(1.0, 0.0, num_steps + 1), shift)


def student_sigmas(timesteps: Sequence[float], shift: float) -> jax.Array:
  """The few-step student's levels: e.g. [1000, 750, 500, 250] -> shifted sigmas.

  With shift 5 this gives timesteps of about [1000, 937.5, 833.3, 625].
  """
  t = np.asarray(timesteps, np.float32)
  if t.ndim != 1 or t.size == 0 or np.any(t <= 0) or np.any(t > NUM_TRAIN_TIMESTEPS):
    raise ValueError(f"student timesteps must be a non-empty list in (0, 1000], got {list(t)}")
  if np.any(np.diff(t) >= 0):
    raise ValueError(f"student timesteps must be strictly decreasing, got {list(t)}")
  return shift_sigma(jnp.asarray(t) / NUM_TRAIN_TIMESTEPS, shift)


def sample_training_sigmas(key: jax.Array, shape, shift: float,
                           minval: float = 0.0, maxval: float = 1.0) -> jax.Array:
  """Training noise levels: u ~ U[minval, maxval], then shifted. f32[shape]."""
  u = jax.random.uniform(key, shape, jnp.float32, minval, maxval)
  return shift_sigma(u, shift)

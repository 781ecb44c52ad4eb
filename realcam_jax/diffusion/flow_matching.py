"""Flow-matching objective (Wan convention) with the Laplacian motion term.

Shapes: latents `[B, F, h, w, C]`, per-frame noise levels `sigma[B, F]`.
Velocity target `v = noise - x0`; `x_t = (1 - sigma) x0 + sigma noise`, so
`x0 = x_t - sigma v`.
"""

from __future__ import annotations

import jax.numpy as jnp


def _per_frame(sigma, x):
  sigma = jnp.asarray(sigma, jnp.float32)
  return sigma.reshape(sigma.shape + (1,) * (x.ndim - sigma.ndim))


def add_noise(x0, noise, sigma):
  """x_t = (1 - sigma) x0 + sigma noise, sigma broadcast per frame."""
  s = _per_frame(sigma, x0)
  return ((1.0 - s) * x0 + s * noise).astype(x0.dtype)


def velocity_target(x0, noise):
  return noise - x0


def x0_from_velocity(x_t, velocity, sigma):
  return x_t - _per_frame(sigma, x_t) * velocity


def velocity_from_x0(x_t, x0, sigma):
  """Inverse of `x0_from_velocity` where sigma > 0."""
  s = _per_frame(sigma, x_t)
  return (x_t - x0) / jnp.maximum(s, 1e-6)


def laplacian2d(x):
  """5-point spatial Laplacian per frame and channel on the interior. [B,F,h,w,C] -> [B,F,h-2,w-2,C]."""
  c = x[:, :, 1:-1, 1:-1]
  return (x[:, :, :-2, 1:-1] + x[:, :, 2:, 1:-1] + x[:, :, 1:-1, :-2] + x[:, :, 1:-1, 2:]
          - 4.0 * c)


def _masked_mean(err, frame_weight):
  """Mean of err[B,F,...] over frames with weight[B,F] (1 = counted) and all other axes."""
  err = err.reshape(err.shape[:2] + (-1,)).mean(-1)
  w = jnp.asarray(frame_weight, jnp.float32)
  return (err * w).sum() / jnp.maximum(w.sum(), 1.0)


def flow_matching_loss(v_pred, v_target, frame_weight, motion_weight: float = 0.0):
  """`(1 - a) * L_FM + a * L_motion` over the frames with weight 1 (the target frames).

  Args:
    v_pred, v_target: f[B, F, h, w, C] predicted and true velocity.
    frame_weight: f[B, F]; 1 for frames in the loss (targets), 0 for source frames.
    motion_weight: a in [0, 1]; L_motion is the MSE of the spatial Laplacians.
  Returns:
    (loss, metrics dict) in float32.
  """
  v_pred = v_pred.astype(jnp.float32)
  v_target = v_target.astype(jnp.float32)
  l_fm = _masked_mean(jnp.square(v_pred - v_target), frame_weight)
  if motion_weight:
    l_motion = _masked_mean(jnp.square(laplacian2d(v_pred) - laplacian2d(v_target)), frame_weight)
  else:
    l_motion = jnp.zeros((), jnp.float32)
  loss = (1.0 - motion_weight) * l_fm + motion_weight * l_motion
  return loss, {"loss": loss, "loss_fm": l_fm, "loss_motion": l_motion}

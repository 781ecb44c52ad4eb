"""The DMD generator pseudo-loss and the critic's loss (pure functions, float32).

Per generator sample x (a student output, `[B, F, h, w, C]`):
  g = (x0_fake - x0_real) / mean(|x - x0_real|)      (mean per sample)
  loss = 0.5 * mean((x - stop_gradient(x - g))**2)
so d loss / d x = g / numel(x): the DMD gradient, normalised per sample.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def dmd_gradient(x, x0_real, x0_fake, eps: float = 1e-6):
  """The normalised DMD direction g, f32 with x's shape."""
  x = x.astype(jnp.float32)
  x0_real = x0_real.astype(jnp.float32)
  x0_fake = x0_fake.astype(jnp.float32)
  axes = tuple(range(1, x.ndim))
  norm = jnp.mean(jnp.abs(x - x0_real), axis=axes, keepdims=True)
  return (x0_fake - x0_real) / jnp.maximum(norm, eps)


def dmd_pseudo_loss(x, x0_real, x0_fake):
  """0.5 * mean((x - sg(x - g))^2); returns (loss, metrics)."""
  g = jax.lax.stop_gradient(dmd_gradient(x, x0_real, x0_fake))
  x = x.astype(jnp.float32)
  target = jax.lax.stop_gradient(x - g)
  loss = 0.5 * jnp.mean(jnp.square(x - target))
  return loss, {"dmd_loss": loss, "dmd_grad_norm": jnp.sqrt(jnp.mean(jnp.square(g)))}

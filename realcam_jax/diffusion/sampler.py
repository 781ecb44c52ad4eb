"""Samplers as lax loops over noise levels.

`velocity_fn(x_t[B,F,h,w,C], sigma[B,F]) -> v` closes over parameters and conditions;
`cfg` builds a guided velocity from a conditional and an unconditional one.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from realcam_jax.diffusion import flow_matching as fm

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]


def cfg(cond_fn: VelocityFn, uncond_fn: VelocityFn, scale: float) -> VelocityFn:
  """Classifier-free guidance: `uncond + scale * (cond - uncond)`; scale 1 = cond only."""
  if scale == 1.0:
    return cond_fn

  def guided(x, sigma):
    c = cond_fn(x, sigma)
    u = uncond_fn(x, sigma)
    return u + scale * (c - u)
  return guided


def euler_sample(velocity_fn: VelocityFn, noise: jax.Array, sigmas: jax.Array) -> jax.Array:
  """Euler ODE integration from sigmas[0] (noise) to sigmas[-1] along `sigmas`.

  Args:
    noise: f[B, F, h, w, C], the sample at sigmas[0].
    sigmas: f32[S + 1] decreasing levels (see `schedule.euler_sigmas`).
  """
  b, f = noise.shape[:2]

  def step(x, s):
    s_now, s_next = s
    v = velocity_fn(x, jnp.full((b, f), s_now, jnp.float32))
    return (x.astype(jnp.float32) + (s_next - s_now) * v.astype(jnp.float32)).astype(x.dtype), None

  x, _ = jax.lax.scan(step, noise, (sigmas[:-1], sigmas[1:]))
  return x


def euler_trajectory(velocity_fn: VelocityFn, noise: jax.Array, sigmas: jax.Array) -> jax.Array:
  """Like `euler_sample` but returns every state: f[S + 1, B, F, h, w, C]."""
  b, f = noise.shape[:2]

  def step(x, s):
    s_now, s_next = s
    v = velocity_fn(x, jnp.full((b, f), s_now, jnp.float32))
    x = (x.astype(jnp.float32) + (s_next - s_now) * v.astype(jnp.float32)).astype(x.dtype)
    return x, x

  _, xs = jax.lax.scan(step, noise, (sigmas[:-1], sigmas[1:]))
  return jnp.concatenate([noise[None], xs], axis=0)


def few_step_sample(velocity_fn: VelocityFn, noise: jax.Array, sigmas: jax.Array,
                    key: jax.Array) -> jax.Array:
  """Few-step (distilled) sampling: predict x0 at each level, re-noise with fresh noise.

  Args:
    sigmas: f32[S] the student's levels, e.g. shifted [1000, 750, 500, 250] / 1000.
  Returns the final x0 prediction.
  """
  b, f = noise.shape[:2]
  keys = jax.random.split(key, sigmas.shape[0])

  def step(x, inp):
    i, s_now, k = inp
    sig = jnp.full((b, f), s_now, jnp.float32)
    x0 = fm.x0_from_velocity(x.astype(jnp.float32), velocity_fn(x, sig).astype(jnp.float32), sig)
    s_next = jnp.where(i + 1 < sigmas.shape[0], sigmas[jnp.minimum(i + 1, sigmas.shape[0] - 1)], 0.)
    nxt = fm.add_noise(x0, jax.random.normal(k, x.shape, jnp.float32), jnp.full((b, f), s_next))
    return nxt.astype(x.dtype), x0

  _, x0s = jax.lax.scan(step, noise, (jnp.arange(sigmas.shape[0]), sigmas, keys))
  return x0s[-1].astype(noise.dtype)

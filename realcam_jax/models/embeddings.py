"""Patch, timestep and text embeddings of the Wan DiT (diffusers naming).

Parameter names follow diffusers `WanTransformer3DModel`:
  patch_embedding/{kernel, bias}
  condition_embedder/time_embedder/{linear_1, linear_2}
  condition_embedder/time_proj
  condition_embedder/text_embedder/{linear_1, linear_2}
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from realcam_jax.models import layers

_EMBED_INIT = jax.nn.initializers.normal(0.02)  # Wan: text/time embeddings ~ N(0, 0.02)


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """Sinusoidal embedding f32[..., dim] of timesteps t[...], [cos | sin] order.

  freq_i = exp(-log(max_period) * i / (dim // 2)), i < dim // 2 (diffusers
  `Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0)`).
  """
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t.astype(jnp.float32)[..., None] * freqs
  emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, [(0, 0)] * (emb.ndim - 1) + [(0, 1)])
  return emb


class PatchEmbed(nnx.Module):
  """Non-overlapping 3D patches -> tokens (Conv3d with stride = kernel = patch).

  kernel: [pt, ph, pw, C, D] (torch Conv3d weight [D, C, pt, ph, pw] transposed).
  """

  def __init__(self, in_channels: int, dim: int, patch_size: Sequence[int], *, dtype,
               param_dtype, rngs: nnx.Rngs):
    self.patch_size = tuple(int(p) for p in patch_size)
    self.dtype = dtype
    shape = self.patch_size + (in_channels, dim)
    init = jax.nn.initializers.xavier_uniform(in_axis=(0, 1, 2, 3), out_axis=4)
    self.kernel = layers.make_param(init, rngs, shape, param_dtype,
                                    (None, None, None, "conv_in", "embed"))
    self.bias = layers.make_param(layers.zeros, rngs, (dim,), param_dtype, ("embed",))

  def __call__(self, x: jax.Array) -> jax.Array:
    """x[B, F, h, w, C] -> tokens [B, F // pt, P, D] with P = (h // ph) * (w // pw)."""
    b, f, h, w, c = x.shape
    pt, ph, pw = self.patch_size
    x = x.astype(self.dtype).reshape(b, f // pt, pt, h // ph, ph, w // pw, pw, c)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)        # [B, F', h', w', pt, ph, pw, C]
    x = x.reshape(b, f // pt, (h // ph) * (w // pw), pt * ph * pw * c)
    kernel = self.kernel[...].astype(self.dtype).reshape(-1, self.kernel.shape[-1])
    return jnp.dot(x, kernel) + self.bias[...].astype(self.dtype)


class TimestepEmbedder(nnx.Module):
  """linear_2(silu(linear_1(x))), in f32 (diffusers `TimestepEmbedding`)."""

  def __init__(self, in_dim: int, dim: int, *, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=jnp.float32, param_dtype=param_dtype, kernel_init=_EMBED_INIT, rngs=rngs)
    self.linear_1 = layers.Linear(in_dim, dim, axes=(None, "embed"), **kw)
    self.linear_2 = layers.Linear(dim, dim, axes=("embed", None), **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.linear_2(jax.nn.silu(self.linear_1(x)))


class TextEmbedder(nnx.Module):
  """linear_2(gelu_tanh(linear_1(x))) (diffusers `PixArtAlphaTextProjection`)."""

  def __init__(self, in_dim: int, dim: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, kernel_init=_EMBED_INIT, rngs=rngs)
    self.linear_1 = layers.Linear(in_dim, dim, axes=("text_embed", "embed"), **kw)
    self.linear_2 = layers.Linear(dim, dim, axes=("embed", None), **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.linear_2(jax.nn.gelu(self.linear_1(x), approximate=True))


class ConditionEmbedder(nnx.Module):
  """Per-frame timestep embedding + modulation vectors, and the text projection."""

  def __init__(self, dim: int, freq_dim: int, text_dim: int, *, dtype, param_dtype,
               rngs: nnx.Rngs):
    self.freq_dim = freq_dim
    self.dim = dim
    self.time_embedder = TimestepEmbedder(freq_dim, dim, param_dtype=param_dtype, rngs=rngs)
    self.time_proj = layers.Linear(dim, 6 * dim, axes=("embed", "modulation"), dtype=jnp.float32,
                                   param_dtype=param_dtype, rngs=rngs)
    self.text_embedder = TextEmbedder(text_dim, dim, dtype=dtype, param_dtype=param_dtype,
                                      rngs=rngs)

  def time(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """t[B, F] -> (temb f32[B, F, D], modulation f32[B, F, 6, D])."""
    temb = self.time_embedder(timestep_embedding(t, self.freq_dim))
    e = self.time_proj(jax.nn.silu(temb))
    return temb, e.reshape(e.shape[:-1] + (6, self.dim))

  def text(self, context: jax.Array) -> jax.Array:
    """context[B, L, Dt] -> [B, L, D] in the activation dtype."""
    return self.text_embedder(context)

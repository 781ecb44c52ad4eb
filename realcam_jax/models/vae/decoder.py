"""Wan2.1 VAE decoder: latents -> video (diffusers' `WanDecoder3d` layout, Wan 2.1 variant)."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from realcam_jax.models.vae.layers import (Cache, CausalConv3d, MidBlock, Resample,
                                           ResidualBlock, RMSNorm)


class UpBlock(nnx.Module):
  """`num_res_blocks + 1` residual blocks, then an optional `upsamplers[0]` (Resample)."""

  def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, upsample_mode: str | None,
               *, conv_impl: str = "auto", dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(conv_impl=conv_impl, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    dims = [in_dim] + [out_dim] * (num_res_blocks + 1)
    self.resnets = nnx.List([ResidualBlock(a, b, **kw) for a, b in zip(dims[:-1], dims[1:])])
    self.upsamplers = nnx.List([Resample(out_dim, upsample_mode, **kw)] if upsample_mode else [])

  def __call__(self, x: jax.Array, cache: Cache, *, first: bool):
    cache = cache or {"resnets": [None] * len(self.resnets),
                      "upsamplers": [None] * len(self.upsamplers)}
    c_res, c_up = [], []
    for block, c in zip(self.resnets, cache["resnets"]):
      x, c = block(x, c, first=first)
      c_res.append(c)
    for block, c in zip(self.upsamplers, cache["upsamplers"]):
      x, c = block(x, c, first=first)
      c_up.append(c)
    return x, {"resnets": c_res, "upsamplers": c_up}


class Decoder3d(nnx.Module):
  """conv_in -> mid_block -> up_blocks -> norm_out -> SiLU -> conv_out.

  Channels: `dims = base_dim * [dim_mult[-1]] + dim_mult[::-1]`; stage i maps
  `dims[i] -> dims[i+1]` except that stages after the first take `dims[i] // 2`
  inputs (Wan 2.1's upsamplers halve the channels). Stage i upsamples unless it
  is the last one: `upsample3d` where `temporal_upsample[i]`, else `upsample2d`.
  """

  def __init__(self, *, z_dim: int, base_dim: int, out_channels: int,
               dim_mult: Sequence[int], num_res_blocks: int,
               temporal_upsample: Sequence[bool], conv_impl: str = "auto",
               dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(conv_impl=conv_impl, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    dim_mult = list(dim_mult)
    dims = [base_dim * m for m in [dim_mult[-1]] + dim_mult[::-1]]
    self.conv_in = CausalConv3d(z_dim, dims[0], 3, padding=1, **kw)
    self.mid_block = MidBlock(dims[0], **kw)
    blocks = []
    for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
      if i > 0:
        in_dim //= 2
      mode = None
      if i != len(dim_mult) - 1:
        mode = "upsample3d" if temporal_upsample[i] else "upsample2d"
      blocks.append(UpBlock(in_dim, out_dim, num_res_blocks, mode, **kw))
    self.up_blocks = nnx.List(blocks)
    self.norm_out = RMSNorm(dims[-1], param_dtype=param_dtype, rngs=rngs)
    self.conv_out = CausalConv3d(dims[-1], out_channels, 3, padding=1, **kw)

  def __call__(self, x: jax.Array, cache: Cache, *, first: bool):
    """x: [B, F, h, w, z_dim] -> ([B, T', h*s, w*s, out_channels], cache)."""
    cache = cache or {"conv_in": None, "mid_block": None,
                      "up_blocks": [None] * len(self.up_blocks), "conv_out": None}
    x, c_in = self.conv_in(x, cache["conv_in"])
    x, c_mid = self.mid_block(x, cache["mid_block"], first=first)
    c_up = []
    for block, c in zip(self.up_blocks, cache["up_blocks"]):
      x, c = block(x, c, first=first)
      c_up.append(c)
    x, c_out = self.conv_out(jax.nn.silu(self.norm_out(x)), cache["conv_out"])
    return x, {"conv_in": c_in, "mid_block": c_mid, "up_blocks": c_up, "conv_out": c_out}

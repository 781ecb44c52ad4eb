"""Wan2.1 VAE encoder: video -> posterior moments (diffusers' `WanEncoder3d` layout)."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from realcam_jax.models.vae.layers import (Cache, CausalConv3d, MidBlock, Resample,
                                           ResidualBlock, RMSNorm)


class Encoder3d(nnx.Module):
  """conv_in -> down_blocks -> mid_block -> norm_out -> SiLU -> conv_out.

  `down_blocks` is the flat list diffusers (and Wan's `downsamples`) use: per stage
  `num_res_blocks` residual blocks, then a `Resample` except after the last stage
  (`downsample3d` where `temporal_downsample[i]`, else `downsample2d`).
  Channels: `dims = base_dim * [1] + dim_mult`.
  """

  def __init__(self, *, in_channels: int, base_dim: int, out_channels: int,
               dim_mult: Sequence[int], num_res_blocks: int,
               temporal_downsample: Sequence[bool], conv_impl: str = "auto",
               dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(conv_impl=conv_impl, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    dims = [base_dim * m for m in [1] + list(dim_mult)]
    self.conv_in = CausalConv3d(in_channels, dims[0], 3, padding=1, **kw)
    blocks = []
    for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
      for _ in range(num_res_blocks):
        blocks.append(ResidualBlock(in_dim, out_dim, **kw))
        in_dim = out_dim
      if i != len(dim_mult) - 1:
        mode = "downsample3d" if temporal_downsample[i] else "downsample2d"
        blocks.append(Resample(out_dim, mode, **kw))
    self.down_blocks = nnx.List(blocks)
    self.mid_block = MidBlock(dims[-1], **kw)
    self.norm_out = RMSNorm(dims[-1], param_dtype=param_dtype, rngs=rngs)
    self.conv_out = CausalConv3d(dims[-1], out_channels, 3, padding=1, **kw)

  def __call__(self, x: jax.Array, cache: Cache, *, first: bool):
    """x: [B, T, H, W, Cin] -> ([B, T', H/s, W/s, out_channels], cache)."""
    cache = cache or {"conv_in": None, "down_blocks": [None] * len(self.down_blocks),
                      "mid_block": None, "conv_out": None}
    x, c_in = self.conv_in(x, cache["conv_in"])
    c_down = []
    for block, c in zip(self.down_blocks, cache["down_blocks"]):
      x, c = block(x, c, first=first)
      c_down.append(c)
    x, c_mid = self.mid_block(x, cache["mid_block"], first=first)
    x, c_out = self.conv_out(jax.nn.silu(self.norm_out(x)), cache["conv_out"])
    return x, {"conv_in": c_in, "down_blocks": c_down, "mid_block": c_mid, "conv_out": c_out}

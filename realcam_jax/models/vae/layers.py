"""Building blocks of the Wan2.1 causal 3D VAE (Flax NNX, channels-last).

Every block has the signature `block(x, cache, *, first) -> (x, cache)`:

  x      f32[B, T, H, W, C] activations (T frames of this chunk).
  cache  the block's feature cache: a nested dict/list of arrays holding the last
         frames each causal convolution saw (or None for "fresh stream", which
         means zeros); the returned cache has fixed shapes independent of T.
  first  static: True for the first chunk of a stream. Only the temporal
         resamplers behave differently on it (Wan passes the very first frame
         through them without temporal mixing).

Parameter names follow diffusers' `AutoencoderKLWan` (`conv1`, `norm1`,
`conv_shortcut`, `to_qkv`, `proj`, `resample`, `time_conv`, `gamma`), so weight
conversion is a rename table. Conv kernels carry the logical axes
(..., 'conv_in', 'conv_out') of `realcam_jax.sharding.RULES`.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Cache = Any  # nested dict/list of arrays (or None)

RESAMPLE_MODES = ("upsample2d", "upsample3d", "downsample2d", "downsample3d")
CONV_IMPLS = ("auto", "conv3d", "taps")


def _triple(v: int | Sequence[int]) -> tuple[int, int, int]:
  return (v, v, v) if isinstance(v, int) else tuple(v)


def _conv(in_ch: int, out_ch: int, kernel: Sequence[int], stride: Sequence[int], padding,
          *, dtype, param_dtype, rngs: nnx.Rngs) -> nnx.Conv:
  axes = (None,) * len(kernel) + ("conv_in", "conv_out")
  return nnx.Conv(in_ch, out_ch, tuple(kernel), tuple(stride), padding=padding,
                  dtype=dtype, param_dtype=param_dtype,
                  kernel_metadata={"out_sharding": axes}, rngs=rngs)


def _per_frame(fn, x: jax.Array) -> jax.Array:
  """Applies a 2D op to every frame: [B, T, H, W, C] -> [B, T, H', W', C']."""
  b, t = x.shape[:2]
  y = fn(x.reshape((b * t,) + x.shape[2:]))
  return y.reshape((b, t) + y.shape[1:])


def conv3d(x: jax.Array, kernel: jax.Array, stride: Sequence[int],
           spatial_padding: Sequence[int], impl: str) -> jax.Array:
  """VALID-in-time 3D conv: x [B, T, H, W, C], kernel [kt, kh, kw, C, O] -> [B, T', H', W', O].

  impl 'conv3d': one XLA 3D convolution (accelerators). 'taps': the kt temporal taps
  stacked on the channel axis and one 2D convolution over all frames -- the same
  numbers, ~5x faster on XLA:CPU, whose 3D convolutions are slow. 'auto': 'taps' on
  CPU, else 'conv3d'.
  """
  if impl == "auto":
    impl = "taps" if jax.default_backend() == "cpu" else "conv3d"
  kt, kh, kw, c, o = kernel.shape
  st, sh, sw = stride
  ph, pw = spatial_padding
  pad_hw = ((ph, ph), (pw, pw))
  if impl == "conv3d":
    return jax.lax.conv_general_dilated(x, kernel, (st, sh, sw), ((0, 0),) + pad_hw,
                                        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
  b, t = x.shape[:2]
  t_out = (t - kt) // st + 1
  taps = [x[:, k:k + st * (t_out - 1) + 1:st] for k in range(kt)]   # kt x [B, T', H, W, C]
  xt = jnp.concatenate(taps, axis=-1) if kt > 1 else taps[0]
  xt = xt.reshape((b * t_out,) + xt.shape[2:])
  k2 = kernel.transpose(1, 2, 0, 3, 4).reshape(kh, kw, kt * c, o)     # channel index k*C + c
  y = jax.lax.conv_general_dilated(xt, k2, (sh, sw), pad_hw,
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y.reshape((b, t_out) + y.shape[1:])


class CausalConv3d(nnx.Module):
  """3D convolution that is causal in time.

  Same hyper-parameters as diffusers' `WanCausalConv3d`: `padding=(pt, ph, pw)`
  means `2*pt` frames of padding on the *past* side only and `ph`/`pw` pixels on
  both spatial sides. The past-side frames come from the cache (the last `2*pt`
  input frames of the previous chunk; zeros at the start of a stream), so a
  video processed in chunks gives exactly the output of the whole video.
  Parameters: kernel [kt, kh, kw, Cin, Cout], bias [Cout].
  """

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
               *, stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
               conv_impl: str = "auto", dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if conv_impl not in CONV_IMPLS:
      raise ValueError(f"unknown conv_impl {conv_impl!r}; expected one of {CONV_IMPLS}")
    kernel, self.stride, pad = _triple(kernel_size), _triple(stride), _triple(padding)
    self.cache_frames = 2 * pad[0]
    self.spatial_padding = (pad[1], pad[2])
    self.conv_impl, self.dtype = conv_impl, dtype
    init = nnx.initializers.lecun_normal()
    self.kernel = nnx.Param(init(rngs.params(), kernel + (in_channels, out_channels), param_dtype),
                            out_sharding=(None, None, None, "conv_in", "conv_out"))
    self.bias = nnx.Param(jnp.zeros((out_channels,), param_dtype), out_sharding=("conv_out",))

  def _conv(self, x: jax.Array) -> jax.Array:
    y = conv3d(x.astype(self.dtype), self.kernel[...].astype(self.dtype), self.stride,
               self.spatial_padding, self.conv_impl)
    return y + self.bias[...].astype(self.dtype)

  def __call__(self, x: jax.Array, cache: jax.Array | None = None):
    """x [B, T, H, W, Cin], cache [B, 2*pt, H, W, Cin] or None -> ([B, T', H', W', Cout], cache)."""
    p = self.cache_frames
    if p == 0:
      return self._conv(x), None
    if cache is None:
      cache = jnp.zeros((x.shape[0], p) + x.shape[2:], x.dtype)
    x = jnp.concatenate([cache.astype(x.dtype), x], axis=1)
    return self._conv(x), x[:, -p:]


class RMSNorm(nnx.Module):
  """Wan's `RMS_norm`: `x / max(||x||_C, 1e-12) * sqrt(C) * gamma`, over channels, in f32."""

  def __init__(self, dim: int, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
    del rngs
    self.scale = float(dim) ** 0.5
    self.gamma = nnx.Param(jnp.ones((dim,), param_dtype), out_sharding=(None,))

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(jnp.square(x32), axis=-1, keepdims=True))
    y = x32 / jnp.maximum(norm, 1e-12) * self.scale * self.gamma[...].astype(jnp.float32)
    return y.astype(x.dtype)


class ResidualBlock(nnx.Module):
  """norm1 -> SiLU -> conv1 (3x3x3 causal) -> norm2 -> SiLU -> conv2, plus a (1x1x1) shortcut."""

  def __init__(self, in_dim: int, out_dim: int, *, conv_impl: str = "auto", dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(conv_impl=conv_impl, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm1 = RMSNorm(in_dim, param_dtype=param_dtype, rngs=rngs)
    self.conv1 = CausalConv3d(in_dim, out_dim, 3, padding=1, **kw)
    self.norm2 = RMSNorm(out_dim, param_dtype=param_dtype, rngs=rngs)
    self.conv2 = CausalConv3d(out_dim, out_dim, 3, padding=1, **kw)
    self.conv_shortcut = CausalConv3d(in_dim, out_dim, 1, **kw) if in_dim != out_dim else None

  def __call__(self, x: jax.Array, cache: Cache, *, first: bool):
    del first
    cache = cache or {}
    h = x if self.conv_shortcut is None else self.conv_shortcut(x)[0]
    y = jax.nn.silu(self.norm1(x))
    y, c1 = self.conv1(y, cache.get("conv1"))
    y = jax.nn.silu(self.norm2(y))
    y, c2 = self.conv2(y, cache.get("conv2"))
    return y + h, {"conv1": c1, "conv2": c2}


class AttentionBlock(nnx.Module):
  """Single-head self-attention over the pixels of each frame (no temporal mixing)."""

  def __init__(self, dim: int, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm = RMSNorm(dim, param_dtype=param_dtype, rngs=rngs)
    self.to_qkv = _conv(dim, 3 * dim, (1, 1), (1, 1), "VALID", **kw)
    self.proj = _conv(dim, dim, (1, 1), (1, 1), "VALID", **kw)

  def _attend(self, x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape                                    # n = B*T frames
    qkv = self.to_qkv(self.norm(x)).reshape(n, h * w, 3 * c)
    q, k, v = jnp.split(qkv, 3, axis=-1)                    # [n, HW, C] each
    logits = jnp.einsum("nqc,nkc->nqk", q, k).astype(jnp.float32) * (c ** -0.5)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("nqk,nkc->nqc", probs, v).reshape(n, h, w, c)
    return self.proj(out)

  def __call__(self, x: jax.Array, cache: Cache, *, first: bool):
    del cache, first
    return x + _per_frame(self._attend, x), None


class Resample(nnx.Module):
  """Spatial (2D) and spatio-temporal (3D) down/up-sampling, as Wan's `Resample`.

  upsample2d    per frame: nearest 2x, 3x3 conv `dim -> out_dim`.
  upsample3d    `time_conv` (causal 3x1x1, `dim -> 2*dim`) doubles the frames (the two
                halves of the channels become frames 2t and 2t+1), then as upsample2d.
                The first frame of a stream is passed through without time_conv (1 latent
                frame -> 1 frame), and time_conv never sees it (its past is zeros).
  downsample2d  per frame: zero-pad right/bottom by 1, 3x3 conv stride 2.
  downsample3d  as downsample2d, then `time_conv` (3x1x1, stride 2, no padding) over
                the previous chunk's last frame and this chunk: the first frame of a
                stream passes through, after it every 2 frames become 1.
  """

  def __init__(self, dim: int, mode: str, out_dim: int | None = None, *, conv_impl: str = "auto",
               dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if mode not in RESAMPLE_MODES:
      raise ValueError(f"unknown resample mode {mode!r}; expected one of {RESAMPLE_MODES}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.mode = mode
    if mode.startswith("upsample"):
      out_dim = dim // 2 if out_dim is None else out_dim
      self.resample = _conv(dim, out_dim, (3, 3), (1, 1), ((1, 1), (1, 1)), **kw)
      self.time_conv = (CausalConv3d(dim, 2 * dim, (3, 1, 1), padding=(1, 0, 0),
                                     conv_impl=conv_impl, **kw)
                        if mode == "upsample3d" else None)
    else:
      self.resample = _conv(dim, dim, (3, 3), (2, 2), ((0, 1), (0, 1)), **kw)
      self.time_conv = (CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1),
                                     conv_impl=conv_impl, **kw)
                        if mode == "downsample3d" else None)

  def _spatial(self, x: jax.Array) -> jax.Array:
    if self.mode.startswith("upsample"):
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # 'nearest-exact' at 2x
    return self.resample(x)

  def _time_upsample(self, x: jax.Array, cache: jax.Array | None):
    """[B, n, H, W, C] -> [B, 2n, H, W, C] (causal time_conv, frames interleaved)."""
    b, n, h, w, c = x.shape
    if n == 0:
      if cache is None:
        cache = jnp.zeros((b, self.time_conv.cache_frames, h, w, c), x.dtype)
      return x, cache
    y, cache = self.time_conv(x, cache)                      # [B, n, H, W, 2C]
    y = y.reshape(b, n, h, w, 2, c).transpose(0, 1, 4, 2, 3, 5)
    return y.reshape(b, 2 * n, h, w, c), cache

  def _time_downsample(self, x: jax.Array, cache: jax.Array | None, first: bool):
    """First chunk: [x0, tc(x0..)] (1+2m -> 1+m frames); later: tc(prev, x) (2m -> m)."""
    last = x[:, -1:]
    if first:
      head = x[:, :1]
      y = self.time_conv(x)[0] if x.shape[1] >= 3 else x[:, :0]
      return jnp.concatenate([head, y.astype(head.dtype)], axis=1), last
    if cache is None:
      raise ValueError("downsample3d needs the previous chunk's cache after the first chunk")
    y = self.time_conv(jnp.concatenate([cache.astype(x.dtype), x], axis=1))[0]
    return y, last

  def __call__(self, x: jax.Array, cache: Cache, *, first: bool):
    new_cache = None
    if self.mode == "upsample3d":
      head = x[:, :1] if first else x[:, :0]
      rest, new_cache = self._time_upsample(x[:, head.shape[1]:], cache)
      x = jnp.concatenate([head, rest.astype(x.dtype)], axis=1)
    x = _per_frame(self._spatial, x)
    if self.mode == "downsample3d":
      x, new_cache = self._time_downsample(x, cache, first)
    return x, new_cache


class MidBlock(nnx.Module):
  """resnets[0] -> attentions[0] -> resnets[1] (diffusers' `WanMidBlock`, one layer)."""

  def __init__(self, dim: int, *, conv_impl: str = "auto", dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.resnets = nnx.List([ResidualBlock(dim, dim, conv_impl=conv_impl, **kw),
                             ResidualBlock(dim, dim, conv_impl=conv_impl, **kw)])
    self.attentions = nnx.List([AttentionBlock(dim, **kw)])

  def __call__(self, x: jax.Array, cache: Cache, *, first: bool):
    cache = cache or {"resnets": [None, None]}
    x, c0 = self.resnets[0](x, cache["resnets"][0], first=first)
    x, _ = self.attentions[0](x, None, first=first)
    x, c1 = self.resnets[1](x, cache["resnets"][1], first=first)
    return x, {"resnets": [c0, c1]}

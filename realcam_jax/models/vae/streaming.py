"""Chunk-by-chunk (streaming) encode and decode with an explicit feature cache.

The VAE is causal in time: each causal 3x3x3 conv needs the last 2 input frames
of the previous chunk, each temporal downsampler the last frame, each temporal
upsampler's `time_conv` the last 2 frames it saw. `VAECache` carries exactly
those arrays (a nested dict mirroring the module tree) in and out; nothing is
stored on the model. Shapes never change along a stream, so one jitted chunk
function serves any stream length in constant memory.

Encode rule (Wan): the first chunk has 1 + r*k frames (usually 1), every later
chunk a multiple of r frames (usually r = 4); a chunk of T frames gives
1 + (T-1)/r latent frames first and T/r later. Decode rule: any number F >= 1
of latent frames per chunk; the first chunk gives 1 + r*(F-1) frames, later
ones r*F. Concatenating the chunk outputs equals `WanVAE.encode`/`decode` on the
whole video (tested to float32 tolerance).

    cache = init_encode_cache(vae, batch=1, height=480, width=832)
    cache, z0 = encode_chunk(vae, cache, video[:, :1])       # [1, 1, 60, 104, 16]
    cache, z1 = encode_chunk(vae, cache, video[:, 1:5])      # [1, 1, 60, 104, 16]

    fns = make_stream_fns(vae)                                # jitted, same signatures
    dcache = init_decode_cache(vae, batch=1, height=480, width=832)
    dcache, frames = fns.decode(dcache, z0)                   # [1, 1, 480, 832, 3]
    dcache, frames = fns.decode(dcache, z1)                   # [1, 4, 480, 832, 3]
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx, struct

from realcam_jax.models.vae.inputs import VAEInputError, check_latents, check_video
from realcam_jax.models.vae.model import WanVAE


@struct.dataclass
class VAECache:
  """Feature cache of a stream.

  layers: nested dict/list of arrays, one per causal conv / temporal resampler:
          [B, 2, h_l, w_l, C_l] (3x3x3 convs, upsample time_conv) or
          [B, 1, h_l, w_l, C_l] (downsample time_conv), at that layer's size.
  kind:   'encode' | 'decode' (static).
  started: False before the first chunk (static: the first chunk is traced separately).
  """
  layers: Any
  kind: str = struct.field(pytree_node=False)
  started: bool = struct.field(pytree_node=False)
  height: int = struct.field(pytree_node=False)   # pixel height of the stream
  width: int = struct.field(pytree_node=False)


def _check_size(model: WanVAE, height: int, width: int):
  s = model.spatial_factor
  if height <= 0 or width <= 0 or height % s or width % s:
    raise VAEInputError(f"stream frame size {height}x{width} must be positive multiples of the "
                        f"VAE's spatial factor {s}")


def _zeros_like_shapes(tree):
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), tree)


def init_encode_cache(model: WanVAE, batch: int, height: int, width: int) -> VAECache:
  """A fresh encode cache (zeros) for a stream of [batch, *, height, width, 3] frames."""
  _check_size(model, height, width)
  x = jax.ShapeDtypeStruct((batch, 1, height, width, model.in_channels), jnp.float32)
  shapes = jax.eval_shape(lambda v: model.encode_step(v, None, first=True)[2], x)
  return VAECache(_zeros_like_shapes(shapes), "encode", False, height, width)


def init_decode_cache(model: WanVAE, batch: int, height: int, width: int) -> VAECache:
  """A fresh decode cache for a stream decoded to [batch, *, height, width, 3] (pixel sizes)."""
  _check_size(model, height, width)
  s = model.spatial_factor
  z = jax.ShapeDtypeStruct((batch, 1, height // s, width // s, model.z_dim), jnp.float32)
  shapes = jax.eval_shape(lambda v: model.decode_step(v, None, first=True)[1], z)
  return VAECache(_zeros_like_shapes(shapes), "decode", False, height, width)


def _check_cache(cache: VAECache, kind: str):
  if not isinstance(cache, VAECache) or cache.kind != kind:
    got = cache.kind if isinstance(cache, VAECache) else type(cache).__name__
    raise VAEInputError(f"{kind}_chunk needs a cache from init_{kind}_cache, got a {got} cache")


def _check_batch(cache: VAECache, x, name: str):
  b = jax.tree.leaves(cache.layers)[0].shape[0]
  if x.shape[0] != b:
    raise VAEInputError(f"{name} has batch {x.shape[0]} but the stream's cache was made for "
                        f"batch {b}")


def encode_chunk_moments(model: WanVAE, cache: VAECache, frames: jax.Array):
  """frames [B, T, H, W, 3] -> (cache, mu, logvar), raw posterior [B, F, H/s, W/s, z] each."""
  _check_cache(cache, "encode")
  check_video(frames, spatial=model.spatial_factor, temporal=model.temporal_factor,
              channels=model.in_channels, name="frames", first_chunk=not cache.started)
  if tuple(frames.shape[2:4]) != (cache.height, cache.width):
    raise VAEInputError(f"frames are {frames.shape[2]}x{frames.shape[3]} but the stream was "
                        f"started at {cache.height}x{cache.width}")
  _check_batch(cache, frames, "frames")
  mu, logvar, layers = model.encode_step(frames, cache.layers, first=not cache.started)
  return cache.replace(layers=layers, started=True), mu, logvar


def encode_chunk(model: WanVAE, cache: VAECache, frames: jax.Array):
  """frames [B, T, H, W, 3] in [-1, 1] -> (cache, normalised latents [B, F, H/s, W/s, z]).

  T = 1 + r*k for the first chunk (F = 1 + k), a multiple of r later (F = T/r).
  """
  cache, mu, _ = encode_chunk_moments(model, cache, frames)
  return cache, model.normalize(mu)


def decode_chunk(model: WanVAE, cache: VAECache, latents: jax.Array):
  """Normalised latents [B, F, h, w, z] -> (cache, frames [B, T, h*s, w*s, 3] in [-1, 1]).

  T = 1 + r*(F-1) for the first chunk of a stream, r*F for later ones.
  """
  _check_cache(cache, "decode")
  check_latents(latents, z_dim=model.z_dim)
  s = model.spatial_factor
  if tuple(latents.shape[2:4]) != (cache.height // s, cache.width // s):
    raise VAEInputError(f"latents are {latents.shape[2]}x{latents.shape[3]} but the stream decodes "
                        f"{cache.height}x{cache.width} frames ({cache.height // s}x"
                        f"{cache.width // s} latents)")
  _check_batch(cache, latents, "latents")
  frames, layers = model.decode_step(model.denormalize(latents), cache.layers,
                                     first=not cache.started)
  return cache.replace(layers=layers, started=True), jnp.clip(frames, -1.0, 1.0)


class StreamFns(NamedTuple):
  """Jitted chunk steps: `encode(cache, frames)` and `decode(cache, latents)` -> (cache, out)."""
  encode: Callable
  decode: Callable


def make_stream_fns(model: WanVAE, donate: bool | None = None) -> StreamFns:
  """Jitted chunk steps bound to `model`'s current weights (weights are an argument, not constants).

  The first chunk of a stream compiles once, later chunks of one size once more.
  donate: donate the cache buffers (default: on accelerators; CPU cannot donate).
  """
  graphdef, state = nnx.split(model)
  if donate is None:
    donate = jax.default_backend() != "cpu"
  donate_argnums = (1,) if donate else ()

  def bind(fn):
    @functools.partial(jax.jit, donate_argnums=donate_argnums)
    def step(state, cache, x):
      return fn(nnx.merge(graphdef, state), cache, x)
    return lambda cache, x: step(state, cache, x)

  return StreamFns(bind(encode_chunk), bind(decode_chunk))


def encode_chunks(model: WanVAE, video: jax.Array, *, chunk_frames: int | None = None,
                  fns: StreamFns | None = None) -> Iterator[jax.Array]:
  """Yields normalised latents of `video` chunk by chunk (1 frame, then `chunk_frames` = r)."""
  r = model.temporal_factor
  chunk_frames = chunk_frames or r
  if chunk_frames % r:
    raise VAEInputError(f"chunk_frames must be a multiple of {r}, got {chunk_frames}")
  check_video(video, spatial=model.spatial_factor, temporal=r, channels=model.in_channels)
  fns = fns or make_stream_fns(model)
  b, t, h, w = video.shape[:4]
  cache = init_encode_cache(model, b, h, w)
  cache, z = fns.encode(cache, video[:, :1])
  yield z
  for start in range(1, t, chunk_frames):
    cache, z = fns.encode(cache, video[:, start:start + chunk_frames])
    yield z


def decode_chunks(model: WanVAE, latents: jax.Array, *, chunk_latents: int = 1,
                  fns: StreamFns | None = None) -> Iterator[jax.Array]:
  """Yields frames of `latents` decoded `chunk_latents` latent frames at a time."""
  check_latents(latents, z_dim=model.z_dim)
  fns = fns or make_stream_fns(model)
  b, f, h, w = latents.shape[:4]
  s = model.spatial_factor
  cache = init_decode_cache(model, b, h * s, w * s)
  for start in range(0, f, chunk_latents):
    cache, frames = fns.decode(cache, latents[:, start:start + chunk_latents])
    yield frames

"""Few-step chunk generation against the KV cache (what streaming and offline rendering call).

A chunk of K frame pairs is generated from noise in `len(sigmas)` steps (the student's
warped levels, e.g. shifted [1000, 750, 500, 250]): at each level predict x0 with the
chunk-causal forward, re-noise it with fresh noise to the next level; the last x0 is the
output. The clean chunk is then run once more at sigma 0 and its KV written into the
cache (the "commit" pass) so later chunks attend to it. Everything is a pure function of
(graphdef, params, cache, inputs, key) with fixed shapes: jit it once and call it per
chunk, donating the cache.

`run_chunk` is the one loop behind both inference and the Self-Forcing rollout: a
`lax.while_loop` whose every iteration is one network call (levels 0..exit, then the
commit pass), so the network is traced once per chunk program. With a `source_once`
cache (`student.source_once`, `models/causal.py`) the chunk's sources run once before
the loop (`causal.source_pass`) and every iteration runs the target tokens only
(`causal.target_step`): half the query tokens per network call.

Noise: `chunk_keys(key, num_levels)` splits a chunk's key into one key per level; key 0
draws the starting noise, key i (i >= 1) the noise that re-noises x0 to level i.

Shapes: B batch, F frame pairs, K pairs per chunk, h/w/C latent size and channels,
L layers, T tokens of a chunk, N heads, H head dim.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from realcam_jax.diffusion import flow_matching as fm
from realcam_jax.diffusion import schedule
from realcam_jax.inference import kv_cache as kvc
from realcam_jax.models import causal, layers
from realcam_jax.models.blocks import KV


def student_sigmas(config) -> jax.Array:
  """f32[steps]: the student's shifted levels from `config.student`."""
  return schedule.student_sigmas(config.student.timesteps, config.student.shift)


def chunk_keys(key: jax.Array, num_levels: int) -> jax.Array:
  """One key per level for a chunk (see module docstring)."""
  return jax.random.split(key, num_levels)


def predict_x0(model, cache: kvc.KVCache, source_c, x_t, sigma, camera_c, text, chunk_index=None,
               *, window_chunks: int | None = None, anchor_c=None) -> jax.Array:
  """Student x0 for a chunk at one noise level (scalar, shared by the K target frames).

  A `source_once` cache: the chunk's source pass, then its target step. `anchor_c`: the
  chunk's "warped_source" anchor [B, K, h, w, C] (or None). Returns f32[B, K, h, w, C].
  """
  b, k = source_c.shape[:2]
  sig = jnp.full((b, k), sigma, jnp.float32)
  if cache.source_once:
    src_kv = causal.source_pass(model, cache, source_c, text, chunk_index,
                                window_chunks=window_chunks)
    v = causal.target_step(model, cache, src_kv, source_c, x_t, sig, camera_c, text,
                           chunk_index, window_chunks=window_chunks, anchor_c=anchor_c)
  else:
    v = causal.chunk_step(model, cache, source_c, x_t, sig, camera_c, text, chunk_index,
                          window_chunks=window_chunks, anchor_c=anchor_c)
  return causal.target_x0(v, x_t, sig, model.cfg)


@flax.struct.dataclass
class ChunkCarry:
  """State of `run_chunk`'s loop."""
  i: jax.Array        # i32[]; iteration: levels 0..exit, then exit + 1 = commit pass
  x: jax.Array        # [B, K, h, w, C] the network's target input at iteration i
  x_exit: jax.Array   # [B, K, h, w, C] the input at the exit level (set at i == exit)
  x0: jax.Array       # f32[B, K, h, w, C] the x0 prediction at the exit level
  kv: KV              # k, v [L, B, T, N, H] of the last call (the commit pass at the end;
                      # source_once: the targets' [L, B, T / 2, N, H])


def run_chunk(model, cache: kvc.KVCache, source_c, camera_c, text, keys, sigmas, exit_level,
              chunk_index=None, *, window_chunks: int | None = None, anchor_c=None
              ) -> tuple[kvc.KVCache, jax.Array, jax.Array]:
  """Denoises one chunk down to `sigmas[exit_level]`, takes its x0, commits it.

  Args:
    model: the student `RealCamDiT`.
    cache: committed chunks; the chunk is committed as `cache.num_chunks`.
    source_c: [B, K, h, w, C]; camera_c: the chunk's camera features; text or None.
    keys: `chunk_keys(...)`, one per level.
    sigmas: f32[n] decreasing levels.
    exit_level: int or i32[] in [0, n): the chunk's output is its x0 at this level.
    chunk_index: RoPE/visibility index (default `cache.num_chunks`).
    window_chunks: attention window (see `causal.chunk_step`).
    anchor_c: the chunk's "warped_source" anchor [B, K, h, w, C] (or None).

  Returns:
    (cache with the chunk committed at sigma 0, exit input [B, K, h, w, C], x0 f32[B, K, ...]).
  """
  b, k = source_c.shape[:2]
  n = sigmas.shape[0]
  dtype = source_c.dtype
  once = cache.source_once
  if once:                       # the clean sources, once for every level and the commit
    src_kv = causal.source_pass(model, cache, source_c, text, chunk_index,
                                window_chunks=window_chunks)

  def call(x, sigma):
    sig = jnp.full((b, k), sigma, jnp.float32)
    if once:
      v, kv = causal.target_step(model, cache, src_kv, source_c, x, sig, camera_c, text,
                                 chunk_index, window_chunks=window_chunks, return_kv=True,
                                 anchor_c=anchor_c)
    else:
      v, kv = causal.chunk_forward(model, cache, source_c, x, sig, camera_c, text, chunk_index,
                                   window_chunks=window_chunks, return_kv=True,
                                   anchor_c=anchor_c)
    return causal.target_x0(v, x, sig, model.cfg), kv

  def body(c: ChunkCarry) -> ChunkCarry:
    at_exit = c.i == exit_level
    sigma = jnp.where(c.i <= exit_level, sigmas[jnp.minimum(c.i, n - 1)], 0.0)
    x0, kv = call(c.x, sigma)
    nxt = jnp.minimum(c.i + 1, n - 1)
    renoised = fm.add_noise(x0, jax.random.normal(keys[nxt], x0.shape, jnp.float32), sigmas[nxt])
    x_next = jnp.where(at_exit, x0, renoised).astype(dtype)
    return ChunkCarry(i=c.i + 1, x=x_next, x_exit=jnp.where(at_exit, c.x, c.x_exit),
                      x0=jnp.where(at_exit, x0, c.x0), kv=kv)

  noise = jax.random.normal(keys[0], source_c.shape, jnp.float32).astype(dtype)
  cfg = model.cfg
  tokens = cache.chunk_tokens // 2 if once else cache.chunk_tokens
  kv_shape = (cfg.num_layers, b, tokens, cfg.num_heads, cfg.dim // cfg.num_heads)
  kv_zero = jnp.zeros(kv_shape, layers.to_dtype(cfg.dtype))
  init = ChunkCarry(i=jnp.zeros((), jnp.int32), x=noise, x_exit=noise,
                    x0=jnp.zeros(source_c.shape, jnp.float32), kv=KV(kv_zero, kv_zero))
  out = jax.lax.while_loop(lambda c: c.i <= exit_level + 1, body, init)
  kv = causal.chunk_kv(src_kv, out.kv, k, cfg.layout) if once else out.kv
  index = cache.num_chunks if chunk_index is None else chunk_index
  position = cache.query_position(index, window_chunks)    # where its keys were rotated
  return kvc.write(cache, kv.k, kv.v, position), out.x_exit, out.x0


def generate_chunk(graphdef, params, cache: kvc.KVCache, source_c, camera_c, text,
                   key: jax.Array, sigmas: jax.Array, anchor_c=None
                   ) -> tuple[kvc.KVCache, jax.Array]:
  """Generates the next chunk (id `cache.num_chunks`) and commits it.

  Args:
    graphdef, params: the student (`nnx.split`).
    cache: committed chunks so far (donate it when jitting).
    source_c: clean source latents of the chunk [B, K, h, w, C].
    camera_c: the chunk's target camera features ([B, K, 12] or [B, K, P, 6 ph pw]).
    text: [B, Lt, Dt] or None.
    key: this chunk's noise key.
    sigmas: f32[steps] decreasing student levels (`student_sigmas(config)`).
    anchor_c: the chunk's "warped_source" anchor [B, K, h, w, C] (or None).

  Returns:
    (cache with the chunk committed at sigma 0, x0 f32[B, K, h, w, C]).
  """
  model = nnx.merge(graphdef, params)
  n = sigmas.shape[0]
  cache, _, x0 = run_chunk(model, cache, source_c, camera_c, text, chunk_keys(key, n), sigmas,
                           n - 1, anchor_c=anchor_c)
  return cache, x0


def generate_video(graphdef, params, cache: kvc.KVCache, source, camera, text, key: jax.Array,
                   sigmas: jax.Array, *, chunk_pairs: int, anchor=None
                   ) -> tuple[kvc.KVCache, jax.Array]:
  """`generate_chunk` over all chunks of a clip with `lax.scan`.

  Args:
    source: [B, F, h, w, C] with F a multiple of `chunk_pairs`.
    camera: [B, F, ...] camera features of every target frame (or None).
    anchor: [B, F, h, w, C] the "warped_source" anchor of every target frame (or None).
    key: chunk c uses `jax.random.fold_in(key, cache.num_chunks)` at its turn, so a
      clip generated in one call equals the same chunks generated one by one.

  Returns:
    (final cache, x0 f32[B, F, h, w, C]).

  Raises ValueError when an exact (unlimited) cache cannot hold the clip's chunks.
  """
  src = causal.split_chunks(source, chunk_pairs)                 # [n, B, K, h, w, C]
  causal.check_stream_length(cache, src.shape[0], f"a clip of {source.shape[1]} latent frames")
  cam = None if camera is None else causal.split_chunks(camera, chunk_pairs)
  anc = None if anchor is None else causal.split_chunks(anchor, chunk_pairs)

  def body(cache, xs):
    src_c, cam_c, anc_c = xs
    k = jax.random.fold_in(key, cache.num_chunks)
    return generate_chunk(graphdef, params, cache, src_c, cam_c, text, k, sigmas, anc_c)

  cache, x0 = jax.lax.scan(body, cache, (src, cam, anc))
  return cache, causal.merge_chunks(x0)

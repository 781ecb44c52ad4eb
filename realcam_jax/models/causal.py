"""Chunk-causal forward passes of `RealCamDiT` (the student; design.md §3).

A chunk is K consecutive frame pairs (`student.chunk_pairs`), i.e. 2K frames of the
combined sequence. Attention is full inside a chunk and causal across chunks: a
chunk's queries see the source *and* target tokens of earlier chunks. With a rolling
window (W chunks) plus S sink chunks, a query chunk sees its own chunk, the first S
chunks and the last W chunks before it (`kv_cache.visible_chunks`).

Two equivalent ways to run it (the invariant `tests/models/test_causal.py` checks):
  - `full_block_causal`: one forward over the whole sequence with the chunk mask
    (training: ODE init, DMD critic/teacher use the bidirectional model instead);
  - `commit` chunk by chunk into a `KVCache`, then `chunk_step` for the next chunk
    (streaming inference, Self-Forcing rollouts).

Shapes: B batch, F frame pairs of a sequence, K pairs per chunk, h/w latent height and
width, C channels, P tokens per frame, L layers, S cache slots, N heads, H head dim.
Camera features follow `RealCamDiT`: [B, F, 12] (pose12) or [B, F, P, 6 ph pw] (plucker).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from realcam_jax.inference import kv_cache as kvc
from realcam_jax.models import layout
from realcam_jax.models.attention import AttentionMask
from realcam_jax.models.blocks import KV


def check_causal_model(model_cfg) -> None:
  """Raises ValueError for layouts that cannot be streamed chunk by chunk."""
  if model_cfg.layout == "prefix" and model_cfg.pair_rope == "sequential":
    raise ValueError("the chunk-causal student needs RoPE positions that do not depend on the "
                     "stream length: layout 'prefix' with pair_rope 'sequential' places target "
                     "frame i at F + i; use pair_rope 'shared' or layout 'interleaved'")


def tokens_per_frame(model_cfg, latent_hw: tuple[int, int]) -> int:
  """P: tokens of one latent frame at latent size (h, w)."""
  pt, ph, pw = model_cfg.patch_size
  h, w = latent_hw
  if pt != 1 or h % ph or w % pw:
    raise ValueError(f"latent size {latent_hw} with patch {tuple(model_cfg.patch_size)}: the "
                     f"student needs temporal patch 1 and h, w divisible by the spatial patch")
  return (h // ph) * (w // pw)


def chunk_of_frame(num_pairs: int, chunk_pairs: int, model_cfg, first_chunk: int = 0) -> np.ndarray:
  """int32[2F]: chunk id of each frame of the combined sequence (both streams of pair i
  are in chunk i // K)."""
  if chunk_pairs < 1 or num_pairs % chunk_pairs:
    raise ValueError(f"{num_pairs} frame pairs cannot be split into chunks of "
                     f"student.chunk_pairs={chunk_pairs}; the number of latent frames must be a "
                     f"multiple of the chunk size")
  ids = (first_chunk + np.arange(num_pairs, dtype=np.int32) // chunk_pairs)[None]
  return layout.combine(ids, ids, model_cfg.layout)[0]


def chunk_mask(num_pairs: int, tokens: int, chunk_pairs: int, model_cfg, *, sink_chunks: int = 0,
               window_chunks: int = 0) -> AttentionMask:
  """The block-causal mask of a whole sequence over its T = 2F * P tokens.

  window_chunks 0 = unlimited (plain block-causal ids); otherwise an explicit dense mask
  bool[T, T] from `kv_cache.dense_chunk_mask` (sink + rolling window).
  """
  per_token = np.repeat(chunk_of_frame(num_pairs, chunk_pairs, model_cfg), tokens)  # int[T]
  num_chunks = num_pairs // chunk_pairs
  if window_chunks <= 0 or window_chunks >= num_chunks:
    return AttentionMask.block_causal(per_token, per_token)
  return AttentionMask.dense_allowed(kvc.dense_chunk_mask(per_token, sink_chunks, window_chunks))


def full_block_causal(model, source, target, sigma, camera, text=None, *, chunk_pairs: int,
                      sink_chunks: int = 0, window_chunks: int = 0, cond_mask=None):
  """One forward over a whole sequence with the chunk-causal mask.

  Args:
    model: a `RealCamDiT`.
    source: clean source latents [B, F, h, w, C].
    target: noisy target latents [B, F, h, w, C].
    sigma: f32[B, F] noise level of each target frame (any per-frame values).
    camera: target camera features for all F frames (or None).
    text: [B, Lt, Dt] or None.
    chunk_pairs: K (F must be a multiple of K).
    sink_chunks, window_chunks: rolling window (window 0 = unlimited).
    cond_mask: f32[B] (1 = conditioned) or None.

  Returns:
    velocity [B, 2F, h, w, C] for the combined sequence (`layout.split` for the target half).
  """
  check_causal_model(model.cfg)
  p = tokens_per_frame(model.cfg, source.shape[2:4])
  mask = chunk_mask(source.shape[1], p, chunk_pairs, model.cfg, sink_chunks=sink_chunks,
                    window_chunks=window_chunks)
  return model(source, target, sigma, camera, text, cond_mask=cond_mask, mask=mask)


def chunk_forward(model, cache: kvc.KVCache, source_c, target_c, sigma_c, camera_c, text=None,
                  chunk_index=None, *, window_chunks: int | None = None, return_kv: bool = False,
                  cond_mask=None):
  """`chunk_step`, optionally also returning the chunk's KV [L, B, T, N, H] (for `write`)."""
  check_causal_model(model.cfg)
  b, k = source_c.shape[:2]
  t = 2 * k * tokens_per_frame(model.cfg, source_c.shape[2:4])
  if t != cache.chunk_tokens:
    raise ValueError(f"a chunk of {k} pairs at latent size {source_c.shape[2:4]} has {t} tokens "
                     f"but the cache was built for chunks of {cache.chunk_tokens} tokens")
  if cache.k.shape[1] != b:
    raise ValueError(f"the cache has batch {cache.k.shape[1]}, the chunk batch {b}")
  if chunk_index is None and window_chunks is None:
    # A stream: it sees every filled slot, a prefix of the buffer, and its own T keys come
    # first, so the mask is one length (fused kernels take it without a dense mask).
    chunk_index = cache.num_chunks
    mask = AttentionMask.key_prefix(t + cache.filled_len())
  else:
    chunk_index = cache.num_chunks if chunk_index is None else chunk_index
    seen = cache.visible(chunk_index, window_chunks)                        # bool[B, S]
    mask = AttentionMask.key_valid(jnp.concatenate([jnp.ones((b, t), bool), seen], axis=1))
  return model(source_c, target_c, sigma_c, camera_c, text, cond_mask=cond_mask,
               first_pair=chunk_index * k, mask=mask, extra_kv=KV(cache.k, cache.v),
               return_kv=return_kv)


def chunk_step(model, cache: kvc.KVCache, source_c, target_c, sigma_c, camera_c, text=None,
               chunk_index=None, *, window_chunks: int | None = None, cond_mask=None):
  """Velocity of one chunk attending to the cache's visible slots and itself (full).

  Args:
    model: a `RealCamDiT`.
    cache: committed chunks (`KVCache`, k/v [L, B, S, N, H]); read only.
    source_c, target_c: [B, K, h, w, C] the chunk's clean source and noisy target.
    sigma_c: f32[B, K] noise level of each target frame.
    camera_c: camera features of the chunk's K target frames (or None).
    text: [B, Lt, Dt] or None.
    chunk_index: int or i32[] id of this chunk (RoPE continues at pair chunk_index * K);
      default the cache's next chunk (`cache.num_chunks`).
    window_chunks: attention window over earlier chunks (None = the cache's ring; 0 =
      every committed earlier chunk). Sinks are the cache's.
    cond_mask: f32[B] or None.

  Returns:
    velocity [B, 2K, h, w, C] for the chunk's combined sequence.
  """
  return chunk_forward(model, cache, source_c, target_c, sigma_c, camera_c, text, chunk_index,
                       window_chunks=window_chunks, cond_mask=cond_mask)


def commit(model, cache: kvc.KVCache, source_c, target_c, sigma_c, camera_c, text=None, *,
           window_chunks: int | None = None, cond_mask=None) -> kvc.KVCache:
  """Runs the chunk once (as chunk `cache.num_chunks`) and writes its KV into the cache.

  The streaming commit pass uses the clean chunk (target_c = generated x0) with sigma 0.
  Arguments as `chunk_step`. Returns the new cache.
  """
  _, kv = chunk_forward(model, cache, source_c, target_c, sigma_c, camera_c, text,
                        window_chunks=window_chunks, return_kv=True, cond_mask=cond_mask)
  return kvc.write(cache, kv.k, kv.v)


def cache_layout(config, latent_hw: tuple[int, int], num_frames: int | None = None) -> dict:
  """Cache geometry from `config.student` and `config.model`.

  Returns dict(chunk_tokens, sink_chunks, window_chunks) for `kv_cache.init_cache`.
  `student.window_chunks` 0 means unlimited: the ring then holds every chunk of a stream
  of `num_frames` latent frames (default `student.max_frames`), so the cache is exact.
  """
  s = config.student
  k = int(s.chunk_pairs)
  chunk_tokens = 2 * k * tokens_per_frame(config.model, latent_hw)
  sink = int(s.sink_chunks)
  window = int(s.window_chunks)
  if window < 0 or sink < 0:
    raise ValueError(f"student.window_chunks={window} and student.sink_chunks={sink} must be >= 0")
  if window == 0:
    frames = int(s.max_frames if num_frames is None else num_frames)
    window = max(1, math.ceil(frames / k) - sink)
  return dict(chunk_tokens=chunk_tokens, sink_chunks=sink, window_chunks=window)


def init_student_cache(config, batch: int, latent_hw: tuple[int, int],
                       num_frames: int | None = None, dtype=None) -> kvc.KVCache:
  """An empty KV cache for the student described by `config` (see `cache_layout`)."""
  m = config.model
  dtype = jnp.dtype(m.dtype) if dtype is None else dtype
  return kvc.init_cache(m.num_layers, batch, m.num_heads, m.dim // m.num_heads, dtype=dtype,
                        **cache_layout(config, latent_hw, num_frames))


def target_x0(velocity, target, sigma, model_cfg):
  """x0 of the target frames from the combined velocity: f32[B, F, h, w, C]."""
  _, v_t = layout.split(velocity, model_cfg.layout)
  s = jnp.asarray(sigma, jnp.float32)[..., None, None, None]
  return target.astype(jnp.float32) - s * v_t.astype(jnp.float32)


def split_chunks(x, chunk_pairs: int):
  """[B, F, ...] -> [F // K, B, K, ...] (chunks leading, for `lax.scan`)."""
  b, f = x.shape[:2]
  if f % chunk_pairs:
    raise ValueError(f"{f} frames cannot be split into chunks of {chunk_pairs} pairs")
  x = x.reshape((b, f // chunk_pairs, chunk_pairs) + x.shape[2:])
  return jnp.moveaxis(x, 1, 0)


def merge_chunks(x):
  """Inverse of `split_chunks`: [n, B, K, ...] -> [B, n K, ...]."""
  x = jnp.moveaxis(x, 0, 1)
  return x.reshape((x.shape[0], x.shape[1] * x.shape[2]) + x.shape[3:])

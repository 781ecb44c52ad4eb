"""Chunk-causal forward passes of `RealCamDiT` (the student; design.md §3).

A chunk is K consecutive frame pairs (`student.chunk_pairs`), i.e. 2K frames of the
combined sequence. Attention is full inside a chunk and causal across chunks: a
chunk's queries see the source *and* target tokens of earlier chunks. With a rolling
window (W chunks) plus S sink chunks, a query chunk sees its own chunk, the first S
chunks and the last W chunks before it (`kv_cache.visible_chunks`).

Positions: a query chunk sees earlier chunks at the chunk positions of
`kv_cache.chunk_positions` (the sinks at 0..S-1, the window right before the query),
so RoPE positions stay bounded and a stream at chunk 100,000 computes what it computes
at chunk S + W + 1 for the same inputs and visible history. Chunk c's pairs sit at
pair positions (position * K + 0..K-1), mapped to frames by `layout.frame_positions`
for every `pair_rope` (interleaved + sequential: 2 per pair).

Two equivalent ways to run it (the invariant `tests/models/test_causal.py` checks):
  - `full_block_causal`: one forward over the whole sequence with the chunk mask
    (training: ODE init; the DMD critic/teacher use the bidirectional model instead).
    Where a query chunk needs the sinks at another position than their own (after the
    window has slid past them) the sequence gets copies of the sink chunks at that
    position, seen only by that query chunk; with `history_target` it gets clean
    copies of every chunk (sigma 0) that later chunks see instead of the noisy ones;
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


def sequence_plan(num_chunks: int, sink_chunks: int, window_chunks: int,
                  clean_history: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        np.ndarray]:
  """The chunks of `full_block_causal`'s sequence and who sees whom (pure NumPy).

  Chunks 0..n-1 are the sequence's own chunks (the queries). With `clean_history`
  chunks n..2n-1 are their clean copies, which later chunks see instead of them. For
  every query chunk q whose sinks sit elsewhere (`kv_cache.eviction_shift` > 0) the
  sink chunks are copied once more at that position, seen by q (and its clean copy).

  Returns:
    (chunk int[E] which input chunk each sequence chunk copies, clean bool[E] whether it
    takes the clean target at sigma 0, position int[E] its chunk position, visible
    bool[E, E] which sequence chunks each one attends to).
  """
  n, s_, w_ = num_chunks, sink_chunks, window_chunks
  src, clean, pos = list(range(n)), [False] * n, list(range(n))
  hist = list(range(n))
  if clean_history:
    hist = list(range(n, 2 * n))
    src, clean, pos = src + list(range(n)), clean + [True] * n, pos + list(range(n))
  copies = {}
  for q in range(n):
    shift = max(0, q - s_ - w_) if w_ > 0 else 0
    if shift:
      copies[q] = list(range(len(src), len(src) + min(s_, n)))
      for j in range(min(s_, n)):
        src.append(j)
        clean.append(clean_history)
        pos.append(j + shift)
  e = len(src)
  vis = np.eye(e, dtype=bool)
  for q in range(n):
    seen = kvc.visible_chunks(q, n, s_, w_ if w_ > 0 else n) & (np.arange(n) < q)
    for node in {q, hist[q]}:
      for c in np.flatnonzero(seen):
        vis[node, copies[q][c] if (q in copies and c < s_) else hist[c]] = True
  for cs in copies.values():
    for a, i in enumerate(cs):
      vis[i, cs[:a]] = True
  return np.asarray(src), np.asarray(clean), np.asarray(pos), vis


def full_block_causal(model, source, target, sigma, camera, text=None, *, chunk_pairs: int,
                      sink_chunks: int = 0, window_chunks: int = 0, cond_mask=None,
                      history_target=None):
  """One forward over a whole sequence with the chunk-causal mask.

  Computes what streaming computes chunk by chunk (positions included, see the module
  docstring): chunk c sees the chunks before it that a stream's chunk c sees, at the
  same positions.

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
    history_target: clean target latents [B, F, h, w, C] or None. When given, later
      chunks see each earlier chunk as committed from these latents at sigma 0 (as a
      stream commits its finished chunks) instead of the chunk's own noisy input.

  Returns:
    velocity [B, 2F, h, w, C] for the combined sequence (`layout.split` for the target half).
  """
  cfg = model.cfg
  check_causal_model(cfg)
  f, k = source.shape[1], chunk_pairs
  p = tokens_per_frame(cfg, source.shape[2:4])
  chunk_of_frame(f, k, cfg)                                  # checks F % K
  n = f // k
  window = window_chunks if 0 < window_chunks < n else 0
  src_ids, clean, pos, vis = sequence_plan(n, sink_chunks, window, history_target is not None)
  if len(src_ids) == n:
    mask = chunk_mask(f, p, k, cfg, sink_chunks=sink_chunks, window_chunks=window_chunks)
    return model(source, target, sigma, camera, text, cond_mask=cond_mask, mask=mask)
  pairs = (src_ids[:, None] * k + np.arange(k)).reshape(-1)             # input pair per pair
  is_clean = np.repeat(clean, k)
  take = lambda x: None if x is None else jnp.take(x, pairs, axis=1)    # noqa: E731
  hist_t = target if history_target is None else history_target
  tgt = jnp.where(is_clean[None, :, None, None, None], take(hist_t.astype(target.dtype)),
                  take(target))
  sig = jnp.where(is_clean[None], 0.0, take(jnp.asarray(sigma, jnp.float32)))
  pair_pos = (pos[:, None] * k + np.arange(k)).reshape(-1).astype(np.int32)
  ids = np.repeat(np.arange(len(src_ids)), k)[None]                     # sequence chunk of pair
  frame_chunk = layout.combine(ids, ids, cfg.layout)[0]
  per_token = np.repeat(frame_chunk, p)
  mask = AttentionMask.dense_allowed(vis[per_token][:, per_token])
  v = model(take(source), tgt, sig, take(camera), text, cond_mask=cond_mask, pair_pos=pair_pos,
            mask=mask)
  v_s, v_t = layout.split(v, cfg.layout)
  return layout.combine(v_s[:, :f], v_t[:, :f], cfg.layout)


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
  # Bounded positions (module docstring): the query at its chunk position, each cached
  # block rotated from the position it was written at to the one this query reads it at.
  position = cache.query_position(chunk_index, window_chunks)
  stride = layout.pair_stride(model.cfg.layout, model.cfg.pair_rope)
  moved = cache.position_shift(chunk_index, window_chunks) * (k * stride)  # i32[blocks]
  return model(source_c, target_c, sigma_c, camera_c, text, cond_mask=cond_mask,
               first_pair=position * k, mask=mask, extra_kv=KV(cache.k, cache.v),
               extra_shift=jnp.repeat(moved, cache.chunk_tokens,
                                      total_repeat_length=cache.k.shape[2]),
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
    chunk_index: int or i32[] id of this chunk (its RoPE position is
      `cache.query_position(chunk_index)`); default the cache's next chunk
      (`cache.num_chunks`).
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
  return kvc.write(cache, kv.k, kv.v, cache.query_position(cache.num_chunks, window_chunks))


def cache_layout(config, latent_hw: tuple[int, int], num_frames: int | None = None) -> dict:
  """Cache geometry from `config.student` and `config.model`.

  Returns dict(chunk_tokens, sink_chunks, window_chunks, exact) for `kv_cache.init_cache`.
  `student.window_chunks` 0 means unlimited: the cache then holds every chunk of a stream
  of `num_frames` latent frames (default `student.max_frames`) and is `exact`: a longer
  stream is an error (`check_stream_length`), never a silent wrap.
  Raises ValueError when the positions a stream can reach exceed `model.rope_max_seq_len`.
  """
  s = config.student
  k = int(s.chunk_pairs)
  chunk_tokens = 2 * k * tokens_per_frame(config.model, latent_hw)
  sink = int(s.sink_chunks)
  window = int(s.window_chunks)
  if window < 0 or sink < 0:
    raise ValueError(f"student.window_chunks={window} and student.sink_chunks={sink} must be >= 0")
  exact = window == 0
  if exact:
    frames = int(s.max_frames if num_frames is None else num_frames)
    window = max(1, math.ceil(frames / k) - sink)
  # Frame positions a query can reach: chunk positions up to S + W (ring; S + W - 1 when
  # exact, nothing is ever evicted), K pairs each, `pair_stride` positions per pair.
  span = ((sink + window + (0 if exact else 1)) * k
          * layout.pair_stride(config.model.layout, config.model.pair_rope))
  limit = int(config.model.get("rope_max_seq_len", span))
  if span > limit:
    raise ValueError(
        f"a stream with student.sink_chunks={sink} and "
        + (f"{window} chunks (student.window_chunks=0: unlimited up to "
           f"{'student.max_frames' if num_frames is None else 'max_frames'}={frames})"
           if exact else f"student.window_chunks={window}")
        + f" of student.chunk_pairs={k} pairs reaches RoPE position {span - 1}, beyond "
        f"model.rope_max_seq_len={limit}; use a smaller window or fewer frames")
  return dict(chunk_tokens=chunk_tokens, sink_chunks=sink, window_chunks=window, exact=exact)


def check_stream_length(cache: kvc.KVCache, num_chunks: int, what: str = "the stream") -> None:
  """Raises ValueError when an `exact` (unlimited) cache would have to hold more than its
  capacity: `num_chunks` is the number of chunks committed once the next one is done."""
  if cache.exact and num_chunks > cache.capacity:
    raise ValueError(
        f"{what} reached chunk {num_chunks} but the unlimited KV cache "
        f"(student.window_chunks=0) holds {cache.capacity} chunks "
        f"({cache.chunk_tokens} tokens each), "
        f"sized by student.max_frames (or the max_frames argument); raise it to cover the "
        f"whole stream, or stream with a rolling window (student.window_chunks > 0, "
        f"student.sink_chunks), which has no length limit")


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

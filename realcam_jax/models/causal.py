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

`student.source_once` (default False): inside a chunk the source tokens attend only to
the chunk's sources and the visible earlier chunks, not to the chunk's noisy targets (the
targets still see everything of their chunk). The sources are clean and the same in every
denoising step, so their keys/values are computed once per chunk (`source_pass`, K P query
tokens) and each denoising step and the commit pass run the K P target tokens only
(`target_step`: keys = the chunk's targets, its source KV, the cache): per chunk of n
steps (n + 1) 2KP query tokens become (n + 2) KP, 1.67x fewer for 4 steps, with the same
cache. A different function from the default (a model trained one way is not the other),
so every path takes the option: `chunk_mask` / `full_block_causal(source_once=True)`, the
cache (`KVCache.source_once`, from `init_student_cache`) for streaming and the rollouts.
Tested in `tests/models/test_source_once.py`.

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


def source_once(config) -> bool:
  """`student.source_once` (see the module docstring), checked; False when absent."""
  value = config.student.get("source_once", False)
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"student.source_once must be True or False, got {value!r}")
  return bool(value)


def source_once_allowed(chunk_of_token: np.ndarray, is_target_token: np.ndarray) -> np.ndarray:
  """bool[T, T]: False where a source query would see a target key of its own chunk (the
  pairs `source_once` removes; AND it with a chunk-visibility mask)."""
  same = chunk_of_token[:, None] == chunk_of_token[None, :]
  return ~(same & ~is_target_token[:, None] & is_target_token[None, :])


def chunk_mask(num_pairs: int, tokens: int, chunk_pairs: int, model_cfg, *, sink_chunks: int = 0,
               window_chunks: int = 0, source_once: bool = False) -> AttentionMask:
  """The block-causal mask of a whole sequence over its T = 2F * P tokens.

  window_chunks 0 = unlimited (plain block-causal ids); otherwise an explicit dense mask
  bool[T, T] from `kv_cache.dense_chunk_mask` (sink + rolling window). source_once: a
  chunk's sources do not see its targets (module docstring); unlimited, that is still
  block-causal, with ids 2 chunk + (1 for target tokens).
  """
  per_token = np.repeat(chunk_of_frame(num_pairs, chunk_pairs, model_cfg), tokens)  # int[T]
  is_target = np.repeat(layout.is_target(num_pairs, model_cfg.layout), tokens)     # bool[T]
  num_chunks = num_pairs // chunk_pairs
  if window_chunks <= 0 or window_chunks >= num_chunks:
    ids = 2 * per_token + is_target if source_once else per_token
    return AttentionMask.block_causal(ids, ids)
  allowed = kvc.dense_chunk_mask(per_token, sink_chunks, window_chunks)
  if source_once:
    allowed = allowed & source_once_allowed(per_token, is_target)
  return AttentionMask.dense_allowed(allowed)


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
                      history_target=None, source_once: bool = False, anchor=None):
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
    source_once: inside every chunk (and every copy of one) the sources do not see the
      targets (`student.source_once`, module docstring); what a `source_once` stream
      computes.
    anchor: [B, F, h, w, C] the "warped_source" prediction's anchor latents (or None).

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
    mask = chunk_mask(f, p, k, cfg, sink_chunks=sink_chunks, window_chunks=window_chunks,
                      source_once=source_once)
    return model(source, target, sigma, camera, text, cond_mask=cond_mask, mask=mask,
                 anchor=anchor)
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
  allowed = vis[per_token][:, per_token]
  if source_once:
    allowed = allowed & source_once_allowed(
        per_token, np.repeat(layout.is_target(len(pairs), cfg.layout), p))
  mask = AttentionMask.dense_allowed(allowed)
  v = model(take(source), tgt, sig, take(camera), text, cond_mask=cond_mask, pair_pos=pair_pos,
            mask=mask, anchor=take(anchor))
  v_s, v_t = layout.split(v, cfg.layout)
  return layout.combine(v_s[:, :f], v_t[:, :f], cfg.layout)


def _check_chunk(model, cache: kvc.KVCache, source_c, source_once: bool) -> None:
  """Raises ValueError when the chunk does not fit the cache, or the cache was built for
  the other `student.source_once` setting."""
  check_causal_model(model.cfg)
  b, k = source_c.shape[:2]
  t = 2 * k * tokens_per_frame(model.cfg, source_c.shape[2:4])
  if t != cache.chunk_tokens:
    raise ValueError(f"a chunk of {k} pairs at latent size {source_c.shape[2:4]} has {t} tokens "
                     f"but the cache was built for chunks of {cache.chunk_tokens} tokens")
  if cache.k.shape[1] != b:
    raise ValueError(f"the cache has batch {cache.k.shape[1]}, the chunk batch {b}")
  if cache.source_once != source_once:
    raise ValueError(
        "the cache was built with student.source_once=True: run a chunk as `source_pass` + "
        "`target_step` (inference.student does)" if cache.source_once else
        "`source_pass` / `target_step` need a cache built with student.source_once=True "
        "(`init_student_cache`); this one runs whole chunks (`chunk_step`)")


def _read_cache(model, cache: kvc.KVCache, source_c, num_current: int, num_source: int,
                chunk_index, window_chunks):
  """How a chunk's queries read its keys [its num_current tokens ; num_source source keys
  of the chunk (source_once) ; the cache buffer]: (first pair, mask, extra_shift i32[S'])."""
  b, k = source_c.shape[:2]
  if chunk_index is None and window_chunks is None:
    # A stream: it sees every filled slot, a prefix of the buffer, and its own keys come
    # first, so the mask is one length (fused kernels take it without a dense mask).
    chunk_index = cache.num_chunks
    mask = AttentionMask.key_prefix(num_current + num_source + cache.filled_len())
  else:
    chunk_index = cache.num_chunks if chunk_index is None else chunk_index
    seen = cache.visible(chunk_index, window_chunks)                        # bool[B, S]
    mask = AttentionMask.key_valid(
        jnp.concatenate([jnp.ones((b, num_current + num_source), bool), seen], axis=1))
  # Bounded positions (module docstring): the query at its chunk position, each cached
  # block rotated from the position it was written at to the one this query reads it at.
  position = cache.query_position(chunk_index, window_chunks)
  stride = layout.pair_stride(model.cfg.layout, model.cfg.pair_rope)
  moved = cache.position_shift(chunk_index, window_chunks) * (k * stride)  # i32[blocks]
  shift = jnp.repeat(moved, cache.chunk_tokens, total_repeat_length=cache.k.shape[2])
  if num_source:               # the chunk's own source keys are already at its position
    shift = jnp.concatenate([jnp.zeros((num_source,), shift.dtype), shift])
  return position * k, mask, shift


def chunk_forward(model, cache: kvc.KVCache, source_c, target_c, sigma_c, camera_c, text=None,
                  chunk_index=None, *, window_chunks: int | None = None, return_kv: bool = False,
                  cond_mask=None, anchor_c=None):
  """`chunk_step`, optionally also returning the chunk's KV [L, B, T, N, H] (for `write`)."""
  _check_chunk(model, cache, source_c, source_once=False)
  first_pair, mask, shift = _read_cache(model, cache, source_c, cache.chunk_tokens, 0,
                                        chunk_index, window_chunks)
  return model(source_c, target_c, sigma_c, camera_c, text, cond_mask=cond_mask,
               first_pair=first_pair, mask=mask, extra_kv=KV(cache.k, cache.v),
               extra_shift=shift, return_kv=return_kv, anchor=anchor_c)


def chunk_step(model, cache: kvc.KVCache, source_c, target_c, sigma_c, camera_c, text=None,
               chunk_index=None, *, window_chunks: int | None = None, cond_mask=None,
               anchor_c=None):
  """Velocity of one chunk attending to the cache's visible slots and itself (full).

  Args:
    model: a `RealCamDiT`.
    cache: committed chunks (`KVCache`, k/v [L, B, S, N, H]); read only. A `source_once`
      cache is refused (use `source_pass` + `target_step`).
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
    anchor_c: [B, K, h, w, C] the chunk's "warped_source" anchor (or None).

  Returns:
    velocity [B, 2K, h, w, C] for the chunk's combined sequence.
  """
  return chunk_forward(model, cache, source_c, target_c, sigma_c, camera_c, text, chunk_index,
                       window_chunks=window_chunks, cond_mask=cond_mask, anchor_c=anchor_c)


def source_pass(model, cache: kvc.KVCache, source_c, text=None, chunk_index=None, *,
                window_chunks: int | None = None, cond_mask=None) -> KV:
  """`student.source_once`: the chunk's source tokens once, attending to each other and
  the cache's visible slots (not to the chunk's targets).

  Args: as `chunk_step` (a `source_once` cache; no target, sigma or camera: the sources
  are clean, at timestep 0, and carry no camera).

  Returns:
    the sources' KV, k/v [L, B, K P, N, H] (post-RoPE, at the chunk's position): the
    `source_kv` of this chunk's `target_step` calls and its `commit`.
  """
  _check_chunk(model, cache, source_c, source_once=True)
  first_pair, mask, shift = _read_cache(model, cache, source_c, cache.chunk_tokens // 2, 0,
                                        chunk_index, window_chunks)
  _, kv = model(source_c, None, None, None, text, cond_mask=cond_mask, first_pair=first_pair,
                mask=mask, extra_kv=KV(cache.k, cache.v), extra_shift=shift, return_kv=True,
                streams="source")
  return kv


def target_step(model, cache: kvc.KVCache, source_kv: KV, source_c, target_c, sigma_c, camera_c,
                text=None, chunk_index=None, *, window_chunks: int | None = None,
                return_kv: bool = False, cond_mask=None, anchor_c=None):
  """`student.source_once`: one denoising step (or the commit pass) of the chunk's target
  tokens only, attending to each other, the chunk's `source_kv` and the cache's visible
  slots. The DiT runs on K P tokens instead of the 2 K P of `chunk_step`.

  Args:
    source_kv: the chunk's `source_pass` (same cache, chunk_index and window_chunks).
    source_c: [B, K, h, w, C] (embedded for the source skip / source-residual head only).
    the rest: as `chunk_step` (a `source_once` cache).

  Returns:
    velocity [B, K, h, w, C] of the target frames only; with return_kv also the targets'
    KV [L, B, K P, N, H] (`chunk_kv` joins it with the sources' for `write`).
  """
  _check_chunk(model, cache, source_c, source_once=True)
  half = cache.chunk_tokens // 2
  want = (model.cfg.num_layers, source_c.shape[0], half)
  if tuple(source_kv.k.shape[:3]) != want or source_kv.v.shape != source_kv.k.shape:
    raise ValueError(f"source_kv has k {tuple(source_kv.k.shape)}, v {tuple(source_kv.v.shape)}; "
                     f"expected [L={want[0]}, B={want[1]}, K P={half}, N, H] from `source_pass` "
                     f"of this chunk")
  first_pair, mask, shift = _read_cache(model, cache, source_c, half, half, chunk_index,
                                        window_chunks)
  return model(source_c, target_c, sigma_c, camera_c, text, cond_mask=cond_mask,
               first_pair=first_pair, mask=mask, extra_kv=(source_kv, KV(cache.k, cache.v)),
               extra_shift=shift, return_kv=return_kv, streams="target", anchor=anchor_c)


def chunk_kv(source_kv: KV, target_kv: KV, chunk_pairs: int, layout_name: str) -> KV:
  """A chunk's KV [L, B, 2 K P, N, H] from its sources' and targets' [L, B, K P, N, H],
  in the combined layout's token order (the slots `chunk_forward` fills for `write`)."""
  def join(src, tgt):
    l, b, n = src.shape[:3]
    frames = lambda x: x.reshape((l * b, chunk_pairs, n // chunk_pairs) + x.shape[3:])  # noqa
    both = layout.combine(frames(src), frames(tgt.astype(src.dtype)), layout_name)
    return both.reshape((l, b, 2 * n) + src.shape[3:])
  return KV(join(source_kv.k, target_kv.k), join(source_kv.v, target_kv.v))


def commit(model, cache: kvc.KVCache, source_c, target_c, sigma_c, camera_c, text=None, *,
           window_chunks: int | None = None, cond_mask=None, source_kv: KV | None = None,
           anchor_c=None) -> kvc.KVCache:
  """Runs the chunk once (as chunk `cache.num_chunks`) and writes its KV into the cache.

  The streaming commit pass uses the clean chunk (target_c = generated x0) with sigma 0.
  Arguments as `chunk_step`. With a `source_once` cache only the targets run
  (`target_step`) against `source_kv` (the chunk's `source_pass`; None = computed here)
  and the sources' and targets' KV are written. Returns the new cache.
  """
  position = cache.query_position(cache.num_chunks, window_chunks)
  if not cache.source_once:
    _, kv = chunk_forward(model, cache, source_c, target_c, sigma_c, camera_c, text,
                          window_chunks=window_chunks, return_kv=True, cond_mask=cond_mask,
                          anchor_c=anchor_c)
    return kvc.write(cache, kv.k, kv.v, position)
  if source_kv is None:
    source_kv = source_pass(model, cache, source_c, text, window_chunks=window_chunks,
                            cond_mask=cond_mask)
  _, kv_t = target_step(model, cache, source_kv, source_c, target_c, sigma_c, camera_c, text,
                        window_chunks=window_chunks, return_kv=True, cond_mask=cond_mask,
                        anchor_c=anchor_c)
  kv = chunk_kv(source_kv, kv_t, source_c.shape[1], model.cfg.layout)
  return kvc.write(cache, kv.k, kv.v, position)


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
  """An empty KV cache for the student described by `config` (see `cache_layout`; a
  `source_once` cache with `student.source_once`)."""
  m = config.model
  dtype = jnp.dtype(m.dtype) if dtype is None else dtype
  return kvc.init_cache(m.num_layers, batch, m.num_heads, m.dim // m.num_heads, dtype=dtype,
                        source_once=source_once(config),
                        **cache_layout(config, latent_hw, num_frames))


def target_x0(velocity, target, sigma, model_cfg):
  """x0 of the target frames f32[B, F, h, w, C] from the combined velocity [B, 2F, ...] or
  from the targets' own velocity [B, F, ...] (`target_step`)."""
  f = target.shape[1]
  if velocity.shape[1] not in (f, 2 * f):
    raise ValueError(f"velocity has {velocity.shape[1]} frames; expected {2 * f} (the combined "
                     f"sequence) or {f} (the target frames) for a target of {f} frames")
  v_t = velocity if velocity.shape[1] == f else layout.split(velocity, model_cfg.layout)[1]
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

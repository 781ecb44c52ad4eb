"""Functional KV cache for chunk-causal streaming (a pytree passed in and returned).

The cache holds the keys/values of *committed* chunks (source and target tokens of K
frame pairs each). Slots are grouped in chunk-sized blocks:

  slots S = (sink_chunks + window_chunks) * chunk_tokens

Chunk c goes to block `c` while c < sink_chunks (the "sink": the first chunks, kept
forever), otherwise to block `sink + (c - sink) % window` (a ring buffer holding the
last `window_chunks` chunks). A per-block chunk id gives the validity mask; the
physical slot order does not matter for attention.

Positions (StreamingLLM-style re-indexing; issue 20). A query in chunk q sees its own
chunk, the sinks and the last W chunks before it. It reads them at *chunk positions*
that depend only on that visible history, never on how long the stream has run:

  shift(q)     = max(0, q - S - W)        (0 while nothing has been evicted; W = 0: 0)
  position(q)  = q - shift(q)             (the query chunk; at most S + W)
  position(c)  = c            for a sink  (c < S)
               = c - shift(q) for a window chunk (keeps its true distance q - c)

so from chunk S + W on every query sits at position S + W with the window right before
it and the sinks at 0..S-1, exactly the geometry of chunk S + W of any stream. RoPE
positions therefore stay below (S + W + 1) K pairs for a stream of any length.

Keys are cached after RoPE at the position they were written at (`block_pos`, the
writing query's position). A read re-positions them by rotating each block's temporal
RoPE channels by `position(c) - block_pos[c]` chunks (`position_shift`; RoPE is a
rotation, so rotating by a difference re-places a key exactly). Nothing in the stored
buffer is ever rewritten, so no rounding accumulates along a stream.

`source_once` caches (`student.source_once`) hold chunks whose source tokens did not
attend to their own chunk's targets (`models/causal.py`: the source keys/values are
computed once per chunk, by `causal.source_pass`); the buffer layout is the same, the
flag tells the chunk functions which attention the cached chunks were computed with.

`exact` caches (`student.window_chunks = 0`, "unlimited") must never evict: a stream
longer than the buffer is an error raised by the callers that know the stream length
(`StreamingSession`, `student.generate_video`), not a silent wrap.

Shapes: L layers, B batch, S slots, N heads, H head dim, T tokens of one chunk.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class KVCache:
  k: jax.Array            # f[L, B, S, N, H]
  v: jax.Array            # f[L, B, S, N, H]
  block_chunk: jax.Array  # i32[S // chunk_tokens]; chunk id held by each block, -1 = empty
  block_pos: jax.Array    # i32[S // chunk_tokens]; chunk position its keys were rotated at
  num_chunks: jax.Array   # i32[]; chunks committed so far (= id of the next chunk)
  chunk_tokens: int = flax.struct.field(pytree_node=False)
  sink_chunks: int = flax.struct.field(pytree_node=False)
  window_chunks: int = flax.struct.field(pytree_node=False)
  exact: bool = flax.struct.field(pytree_node=False, default=False)  # never evicts (see top)
  source_once: bool = flax.struct.field(pytree_node=False, default=False)  # see top

  @property
  def num_blocks(self) -> int:
    return self.sink_chunks + self.window_chunks

  def kv_valid(self) -> jax.Array:
    """bool[B, S]: which slots hold a committed chunk."""
    valid = jnp.repeat(self.block_chunk >= 0, self.chunk_tokens)
    return jnp.broadcast_to(valid[None], (self.k.shape[1], valid.shape[0]))

  def filled_len(self) -> jax.Array:
    """i32[]: slots in use. Blocks fill in order 0, 1, ... and are then overwritten in
    place, so the filled slots are always the first `filled_len()`: `kv_valid()` is a
    prefix of the buffer."""
    return jnp.minimum(self.num_chunks, self.num_blocks) * self.chunk_tokens

  def visible(self, query_chunk, window_chunks: int | None = None) -> jax.Array:
    """bool[B, S]: slots a query in chunk `query_chunk` attends to.

    Committed chunks c < query_chunk that are sinks (c < sink_chunks) or among the last
    `window_chunks` before it (None = the ring's own size; 0 = unlimited). For a stream
    (query_chunk == num_chunks) with the default window this equals `kv_valid()`; a cache
    holding more chunks (e.g. a whole training rollout) is read as it was when
    `query_chunk` was generated.
    """
    c = self.block_chunk
    window = self.window_chunks if window_chunks is None else window_chunks
    seen = (c >= 0) & (c < query_chunk)
    if window > 0:
      seen = seen & ((c < self.sink_chunks) | (c >= query_chunk - window))
    seen = jnp.repeat(seen, self.chunk_tokens)
    return jnp.broadcast_to(seen[None], (self.k.shape[1], seen.shape[0]))

  def read_window(self, window_chunks: int | None = None) -> int:
    """The window a read uses: None = the ring's own size (a stream); 0 = unlimited."""
    return self.window_chunks if window_chunks is None else int(window_chunks)

  def query_position(self, query_chunk, window_chunks: int | None = None) -> jax.Array:
    """i32[]: chunk position of query chunk `query_chunk` (see module docstring)."""
    return query_chunk - eviction_shift(query_chunk, self.sink_chunks,
                                        self.read_window(window_chunks))

  def position_shift(self, query_chunk, window_chunks: int | None = None) -> jax.Array:
    """i32[blocks]: chunks by which each block's keys move for a read by `query_chunk`
    (its read position minus the position it was written at). Empty blocks: 0."""
    shift = eviction_shift(query_chunk, self.sink_chunks, self.read_window(window_chunks))
    c = self.block_chunk
    read = jnp.where(c < self.sink_chunks, c, c - shift)
    return jnp.where(c >= 0, read - self.block_pos, 0).astype(jnp.int32)

  @property
  def capacity(self) -> int:
    """Chunks an `exact` cache can hold (a ring holds the last `window_chunks` of any number)."""
    return self.num_blocks


def advance(cache: KVCache, chunks) -> KVCache:
  """The same buffer as the cache of a stream `chunks` chunks further on: the counter and
  the window blocks' chunk ids move by `chunks`, the sinks keep theirs (what a stream
  with the same recent history would hold; for stationarity tests and the drift bench).
  Only meaningful for a ring that has wrapped (`num_chunks > sink + window`); later
  writes evict the oldest chunk only when `chunks` is a multiple of `window_chunks` (the
  ring slot of a chunk is its id mod the window)."""
  c = cache.block_chunk
  return cache.replace(num_chunks=cache.num_chunks + chunks,
                       block_chunk=jnp.where(c >= cache.sink_chunks, c + chunks, c))


def eviction_shift(query_chunk, sink_chunks: int, window_chunks: int):
  """max(0, q - S - W): how far window chunks are moved down for query chunk q (W 0 = 0)."""
  if window_chunks <= 0:
    return jnp.zeros_like(jnp.asarray(query_chunk, jnp.int32))
  return jnp.maximum(jnp.asarray(query_chunk, jnp.int32) - sink_chunks - window_chunks, 0)


def chunk_positions(query_chunk: int, num_chunks: int, sink_chunks: int,
                    window_chunks: int) -> np.ndarray:
  """int[num_chunks] (dense reference): the chunk position at which query chunk
  `query_chunk` sees each chunk (its own chunk included; entries it does not see are
  meaningless). See the module docstring."""
  shift = max(0, query_chunk - sink_chunks - window_chunks) if window_chunks > 0 else 0
  c = np.arange(num_chunks)
  return np.where(c < sink_chunks, c, c - shift)


def init_cache(num_layers: int, batch: int, num_heads: int, head_dim: int, *,
               chunk_tokens: int, window_chunks: int, sink_chunks: int = 0,
               dtype=jnp.float32, exact: bool = False, source_once: bool = False) -> KVCache:
  """An empty cache. `window_chunks` >= 1; `sink_chunks` >= 0; `exact`: must never evict;
  `source_once`: chunks are computed with `student.source_once` (see top)."""
  if window_chunks < 1 or sink_chunks < 0 or chunk_tokens < 1:
    raise ValueError(
        f"cache needs window_chunks >= 1, sink_chunks >= 0, chunk_tokens >= 1; got "
        f"window_chunks={window_chunks}, sink_chunks={sink_chunks}, chunk_tokens={chunk_tokens}")
  blocks = sink_chunks + window_chunks
  shape = (num_layers, batch, blocks * chunk_tokens, num_heads, head_dim)
  return KVCache(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
                 block_chunk=jnp.full((blocks,), -1, jnp.int32),
                 block_pos=jnp.zeros((blocks,), jnp.int32),
                 num_chunks=jnp.zeros((), jnp.int32), chunk_tokens=chunk_tokens,
                 sink_chunks=sink_chunks, window_chunks=window_chunks, exact=bool(exact),
                 source_once=bool(source_once))


def block_for_chunk(chunk, sink_chunks: int, window_chunks: int):
  """Block index that chunk id `chunk` is written to (works on ints and jax scalars)."""
  ring = sink_chunks + (chunk - sink_chunks) % window_chunks
  return jnp.where(chunk < sink_chunks, chunk, ring)


def write(cache: KVCache, k_new: jax.Array, v_new: jax.Array, position=None) -> KVCache:
  """Commits one chunk's keys/values `[L, B, T, N, H]` (T = chunk_tokens) as the next chunk.

  `position`: the chunk position its keys were rotated at (the writing query's
  `query_position`); default the stream's, `cache.query_position(cache.num_chunks)`.
  """
  if k_new.shape[2] != cache.chunk_tokens:
    raise ValueError(f"chunk has {k_new.shape[2]} tokens, cache expects {cache.chunk_tokens}")
  blk = block_for_chunk(cache.num_chunks, cache.sink_chunks, cache.window_chunks)
  start = (0, 0, blk * cache.chunk_tokens, 0, 0)
  k = jax.lax.dynamic_update_slice(cache.k, k_new.astype(cache.k.dtype), start)
  v = jax.lax.dynamic_update_slice(cache.v, v_new.astype(cache.v.dtype), start)
  block_chunk = cache.block_chunk.at[blk].set(cache.num_chunks)
  if position is None:
    position = cache.query_position(cache.num_chunks)
  block_pos = cache.block_pos.at[blk].set(jnp.asarray(position, jnp.int32))
  return cache.replace(k=k, v=v, block_chunk=block_chunk, block_pos=block_pos,
                       num_chunks=cache.num_chunks + 1)


def visible_chunks(query_chunk: int, num_chunks: int, sink_chunks: int,
                   window_chunks: int) -> np.ndarray:
  """bool[num_chunks]: which chunks a query in `query_chunk` attends to (dense reference).

  Its own chunk, the sink chunks before it and the last `window_chunks` chunks before it.
  """
  c = np.arange(num_chunks)
  earlier = c < query_chunk
  return (c == query_chunk) | (earlier & ((c < sink_chunks) | (c >= query_chunk - window_chunks)))


def dense_chunk_mask(chunk_of_token: np.ndarray, sink_chunks: int, window_chunks: int) -> np.ndarray:
  """bool[T, T] reference mask for a whole sequence whose token i is in chunk_of_token[i]."""
  n = int(chunk_of_token.max()) + 1
  vis = np.stack([visible_chunks(q, n, sink_chunks, window_chunks) for q in range(n)])
  return vis[chunk_of_token][:, chunk_of_token]

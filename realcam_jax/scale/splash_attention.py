"""Pallas splash attention (TPU) for `attention(..., impl="splash")`.

`splash_attention(q, k, v, mask, scale)` equals the reference `dot_product` attention
(tested in value and gradient, in Pallas interpret mode on CPU) using the kernels of
`jax.experimental.pallas.ops.tpu.splash_attention`: a flash-style online softmax over
[block_q, block_kv] tiles held in VMEM, with a custom VJP (separate dq and dkv
kernels). Nothing of size T * S is stored in HBM for the scores: per batch element and
head the memory is O(T * block) transient plus the output and the row log-sum-exp.
Tiles the mask rules out entirely are skipped, so a block-causal or windowed mask also
saves their compute.

How our `AttentionMask` is translated:
  - `q_block`/`kv_block` (block-causal) and `allowed` (dense, e.g. the student's sink +
    rolling window from `causal.chunk_mask` or `causal.full_block_causal`'s copied
    sinks) become one static splash mask (`_StaticMask`, a lazy
    `splash_attention_mask.Mask` read tile by tile), the same for every head
    (`MultiHeadMask`). Splash turns it into per-tile data when the kernel is built, so
    these fields must be known at trace time: NumPy arrays (the `AttentionMask`
    constructors keep NumPy inputs as NumPy, so a mask built inside a jitted function
    from NumPy ids stays static) or concrete arrays. A traced one (a mask passed
    through a jit boundary or built from traced values) raises ValueError naming the
    field: splash has no additive-bias input, and its dense dynamic-mask path
    (a jax.Array mask) would hold a T * S mask in HBM and, in this jax version, fails
    under jit (`MaskInfo.is_dynamic_mask` becomes a traced bool). A batch of
    different static masks (fields [B, ...]) runs one kernel per batch element.
  - `kv_valid` and `kv_len` (the key side: a cache's filled or visible slots, the
    stream's key prefix) may be traced (they are, in a stream: the fill level is a
    loop value) and always go in as splash segment ids: query segment 1, key segment 1
    where the key is valid, 0 where not, per batch element (the kernel is vmapped over
    the batch). No tile is skipped for invalid keys, and no T * S mask exists.
  - Block sizes are multiples of 128 (the TPU lane width, which splash's segment-id
    and mask code also require) and must divide the sequence lengths: `fit_block`
    picks one per sequence (queries and keys separately) and the sequences are
    zero-padded up to a multiple of it when they are not (e.g. 65,520 teacher tokens ->
    65,536 with blocks of 512). Padded keys are masked; padded queries see every key
    and are sliced off.
  - q, k, v [B, T, N, H] are transposed to splash's [N, T, H] per batch element (vmap
    over B); the logit scale is applied to q (splash takes no scale), in f32.

Rows that see no key: the reference gives them uniform weights over all keys; splash
has no such rule (its own mask check calls an all-zero row a division by zero). A
static mask with such a row raises ValueError; rows emptied by `kv_valid` / `kv_len`
(traced) cannot be checked: they come out finite (splash's mask value is finite, tested)
but not uniform over the real keys, which `AttentionMask` allows.

Building a kernel reads the static mask tile by tile on the host (splash's
`process_mask`, for the fwd, dq and dkv grids; cached for repeated identical masks):
at the full 65,536-token (padded) sequence with blocks of 512 that took 21 s for the
full mask and 37 s for a block-causal one on this repository's 2 shared CPU cores, once
per trace.

The kernel is built for one device (head_shards = q_seq_shards = 1) and has not been
run on a TPU or under a sharded mesh here (no TPU): correctness is checked with
`interpret=True` (impl `splash_interpret`, any backend, slow), which runs the same
kernel code through the Pallas interpreter, and the tests lower forward and backward to
Mosaic TPU custom calls on CPU (lowering only; compiling them needs libtpu).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.pallas.ops.tpu import splash_attention as sa
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as mask_lib

LANES = 128                      # TPU lane width: every block is a multiple of it
DEFAULT_BLOCK = 512
_MAX_PAD_FRACTION = 1 / 16       # a larger block is used only if it pads at most this much


def _round_up(n: int, m: int) -> int:
  return -(-n // m) * m


def fit_block(n: int, block: int = DEFAULT_BLOCK) -> tuple[int, int]:
  """(block size, padded length) for a sequence of n tokens.

  The largest multiple of 128 up to `block` (at most n rounded up to 128) whose padding
  is at most n / 16, else 128 (the least padding); the sequence is padded to a multiple
  of the block. 65,520 -> (512, 65,536); 1,560 -> (128, 1,664); 24 -> (128, 128).
  """
  if block < LANES or block % LANES:
    raise ValueError(f"splash block size {block} must be a positive multiple of {LANES}")
  top = min(block, _round_up(n, LANES))
  for b in range(top, LANES - 1, -LANES):
    if _round_up(n, b) - n <= n * _MAX_PAD_FRACTION:
      return b, _round_up(n, b)
  return LANES, _round_up(n, LANES)


def _same(a, b) -> bool:
  return (a is None) == (b is None) and (a is None or np.array_equal(a, b))


class _StaticMask(mask_lib.Mask):
  """bool[Tp, Sp]: one batch element's block-causal ids and/or dense `allowed`, padded.

  Evaluated lazily tile by tile (splash reads it in [block_q, block_kv] slices when the
  kernel is built), so block ids never become a dense T x S array. Key s < S is seen by
  real query t < T when kv_block[s] <= q_block[t] and allowed[t, s]; padded keys
  (s >= S) by no real query; padded queries (t >= T) see every key (they are sliced off,
  and their zero output cotangent gives the keys no gradient).
  """

  def __init__(self, shape: tuple[int, int], num_q: int, num_kv: int, q_block, kv_block,
               allowed):
    tp, sp = shape
    self._shape = shape
    self.num_q, self.num_kv = num_q, num_kv
    self.allowed = allowed
    self.block_causal = q_block is not None
    # Padding as block ids: padded keys get an id above every real query's, padded queries
    # the same id (so they see every key). Without block ids every real id is 0.
    top = np.iinfo(np.int64).max
    self.q_ids = np.full(tp, top, np.int64)
    self.kv_ids = np.full(sp, top, np.int64)
    self.q_ids[:num_q] = 0 if q_block is None else q_block
    self.kv_ids[:num_kv] = 0 if kv_block is None else kv_block
    parts = [a.tobytes() for a in (self.q_ids, self.kv_ids)]
    self._hash = hash((shape, num_q, num_kv, *parts,
                       None if allowed is None else allowed.tobytes()))  # once (hashed per head)

  @property
  def shape(self) -> tuple[int, int]:
    return self._shape

  def __getitem__(self, idx) -> np.ndarray:
    qs, ks = idx
    q0, q1, _ = qs.indices(self._shape[0])
    k0, k1, _ = ks.indices(self._shape[1])
    m = self.kv_ids[None, k0:k1] <= self.q_ids[q0:q1, None]
    if self.allowed is not None and q0 < self.num_q and k0 < self.num_kv:
      sub = self.allowed[q0:min(q1, self.num_q), k0:min(k1, self.num_kv)]
      m[:sub.shape[0], :sub.shape[1]] &= sub
    return m

  def empty_rows(self) -> np.ndarray:
    """int[]: real query rows that see no real key."""
    q_ids, kv_ids = self.q_ids[:self.num_q], self.kv_ids[:self.num_kv]
    if self.allowed is None:
      return np.flatnonzero(q_ids < kv_ids.min())
    seen = np.zeros(self.num_q, bool)
    for start in range(0, self.num_q, 1024):    # row chunks: no second T x S array
      stop = min(start + 1024, self.num_q)
      seen[start:stop] = ((kv_ids[None, :] <= q_ids[start:stop, None])
                          & self.allowed[start:stop]).any(axis=1)
    return np.flatnonzero(~seen)

  def __eq__(self, other) -> bool:
    if not isinstance(other, _StaticMask):
      return NotImplemented
    return (self._hash == other._hash and self._shape == other._shape
            and (self.num_q, self.num_kv) == (other.num_q, other.num_kv)
            and all(_same(a, b) for a, b in ((self.q_ids, other.q_ids),
                                              (self.kv_ids, other.kv_ids),
                                              (self.allowed, other.allowed))))

  def __hash__(self) -> int:
    return self._hash


def _static_value(mask, name: str):
  """The field as NumPy, or None; ValueError if it is traced."""
  value = getattr(mask, name)
  if value is None:
    return None
  if isinstance(value, jax.core.Tracer):
    raise ValueError(
        f"attention impl 'splash' needs the mask field {name} ({mask.kind} mask) as a static "
        f"value, but it is traced (an AttentionMask passed into a jitted or scanned function, "
        f"or built from traced values): splash builds its block-sparse mask when the kernel is "
        f"traced. Build the mask from NumPy arrays inside the jitted function, or use "
        f"attention_impl='blockwise' (any traced mask)")
  return np.asarray(value)


def _static_masks(mask, num_q: int, num_kv: int, padded: tuple[int, int], batch: int
                  ) -> list[_StaticMask]:
  """One `_StaticMask` for the whole batch, or one per batch element when they differ."""
  q_block, kv_block = _static_value(mask, "q_block"), _static_value(mask, "kv_block")
  allowed = _static_value(mask, "allowed")
  q_block = None if q_block is None else np.atleast_2d(q_block).astype(np.int64)
  kv_block = None if kv_block is None else np.atleast_2d(kv_block).astype(np.int64)
  allowed = None if allowed is None else np.asarray(allowed, bool).reshape(
      (-1,) + allowed.shape[-2:])
  rows = max([1] + [a.shape[0] for a in (q_block, kv_block, allowed) if a is not None])
  pick = lambda a, i: None if a is None else a[min(i, a.shape[0] - 1)]  # noqa: E731
  masks = [_StaticMask(padded, num_q, num_kv, pick(q_block, i), pick(kv_block, i),
                       pick(allowed, i)) for i in range(rows)]
  if all(m == masks[0] for m in masks[1:]):
    masks = masks[:1]
  for i, m in enumerate(masks):
    empty = m.empty_rows()
    if empty.size:
      raise ValueError(
          f"attention impl 'splash': {empty.size} query rows of the {mask.kind} mask"
          + (f" (batch element {i})" if len(masks) > 1 else "")
          + f" see no key (first: {empty[:5].tolist()}); the reference gives such rows "
          f"uniform weights, splash cannot (it would divide by zero). Use "
          f"attention_impl='dot_product' or 'blockwise' for this mask")
  if len(masks) not in (1, batch):
    raise ValueError(f"attention mask fields have batch size {len(masks)}; expected 1 or {batch}")
  return masks


def _segment_ids(mask, batch: int, num_q: int, num_kv: int, padded: tuple[int, int]):
  """(q int32[B, Tp], kv int32[B, Sp]) from kv_valid / kv_len, or None if neither is set."""
  if mask.kv_valid is None and mask.kv_len is None:
    return None
  valid = jnp.ones((batch, num_kv), bool)
  if mask.kv_valid is not None:
    valid &= jnp.broadcast_to(jnp.atleast_2d(mask.kv_valid), (batch, num_kv))
  if mask.kv_len is not None:
    kv_len = jnp.broadcast_to(jnp.asarray(mask.kv_len), (batch,))
    valid &= jnp.arange(num_kv)[None, :] < kv_len[:, None]
  kv = jnp.pad(valid.astype(jnp.int32), ((0, 0), (0, padded[1] - num_kv)))
  return jnp.ones((batch, padded[0]), jnp.int32), kv


def _kernel(static: _StaticMask, num_heads: int, block_q: int, block_kv: int,
            interpret: bool):
  sizes = sa.BlockSizes(block_q=block_q, block_kv=block_kv, block_kv_compute=block_kv,
                        block_q_dkv=block_q, block_kv_dkv=block_kv,
                        block_kv_dkv_compute=block_kv, block_q_dq=block_q, block_kv_dq=block_kv)
  return sa.make_splash_mha(mask_lib.MultiHeadMask([static] * num_heads), block_sizes=sizes,
                            head_shards=1, q_seq_shards=1, interpret=interpret)


def _heads_first(x: jax.Array, length: int) -> jax.Array:
  """[B, T, N, H] -> [B, N, length, H], zero-padded along T."""
  x = jnp.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0), (0, 0)))
  return jnp.swapaxes(x, 1, 2)


def splash_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask, scale: float, *,
                     block: int = DEFAULT_BLOCK, interpret: bool = False) -> jax.Array:
  """Attention through the splash kernels (see module docstring).

  Args:
    q: [B, T, N, H]; k, v: [B, S, N, H].
    mask: an `AttentionMask`; q_block/kv_block/allowed must be static (NumPy or
      concrete), kv_valid/kv_len may be traced.
    scale: logit scale.
    block: largest query/key block, a multiple of 128 (see `fit_block`).
    interpret: run the kernels in the Pallas interpreter (any backend; slow).

  Returns:
    [B, T, N, H] in q's dtype.
  """
  b, t, n, _ = q.shape
  s = k.shape[1]
  block_q, tp = fit_block(t, block)
  block_kv, sp = fit_block(s, block)
  statics = _static_masks(mask, t, s, (tp, sp), b)
  segments = _segment_ids(mask, b, t, s, (tp, sp))
  qh = _heads_first((q.astype(jnp.float32) * scale).astype(q.dtype), tp)
  kh, vh = _heads_first(k, sp), _heads_first(v, sp)

  def run(kernel, qe, ke, ve, seg_q=None, seg_kv=None):
    ids = None if seg_q is None else sa.SegmentIds(q=seg_q, kv=seg_kv)
    return kernel(qe, ke, ve, segment_ids=ids)          # [N, Tp, H]

  args = (qh, kh, vh) + (() if segments is None else segments)
  kernels = [_kernel(m, n, block_q, block_kv, interpret) for m in statics]
  if len(kernels) == 1:
    out = jax.vmap(functools.partial(run, kernels[0]))(*args)
  else:                                   # a different static mask per batch element
    out = jnp.stack([run(kern, *(a[i] for a in args)) for i, kern in enumerate(kernels)])
  return jnp.swapaxes(out, 1, 2)[:, :t].astype(q.dtype)

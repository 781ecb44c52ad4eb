"""The one attention entry point and its mask description.

`attention(q, k, v, mask, impl)` with q[B, T, N, H], k/v[B, S, N, H] -> [B, T, N, H].

Masks are described, not materialised: an `AttentionMask` holds at most
  - block ids for block-causal attention: `q_block` int[T] or [B, T] (one per
    query token) and `kv_block` int[S] or [B, S] (one per key token); a query
    attends to a key when kv_block <= q_block. Frames or chunks of frames are
    blocks (`frame_block_ids` expands per-frame ids to per-token ids);
  - a key-validity mask `kv_valid` bool[S] or [B, S] (e.g. the filled slots of
    a static KV-cache buffer);
  - a key prefix length `kv_len` int[] or [B]: only keys s < kv_len are seen (a
    static KV-cache buffer filled from the front). Fused kernels take it as a
    sequence length (`key_value_seq_lengths`) instead of a dense mask;
  - an explicit dense `allowed` bool[T, S] or [B, T, S] for patterns the
    fields above cannot express (e.g. a sink + rolling-window reference).
Any may be present (combined with `&`). No fields = full attention.
`mask.dense(T, S)` builds bool[B or 1, T, S]; implementations call it only when
they need a dense mask. A query row with no valid key gets uniform weights
over all keys (never NaN); callers should not rely on such rows.

Implementations live in a registry keyed by name (`register_attention_impl`):
  dot_product  reference einsum + f32 softmax; any backend, memory O(B N T S).
  xla          `jax.nn.dot_product_attention(implementation="xla")`.
  cudnn        `jax.nn.dot_product_attention(implementation="cudnn")`: fused
               flash attention on NVIDIA GPUs, bf16/fp16 inputs only.
               Both take a `kv_len`-only mask as `key_value_seq_lengths` (cuDNN's
               padding mask, no dense mask or bias in memory); any other mask
               goes in dense.
  blockwise    flash-style key-block scan with a custom VJP in plain JAX (any
               backend, O(B N T block) memory; long sequences, see
               `realcam_jax.scale.blockwise_attention`).
  splash       Pallas splash-attention kernels on TPU (block-sparse flash attention: no
               [T, S] scores in memory; `realcam_jax.scale.splash_attention`). Block-causal
               ids and `allowed` must be static (NumPy) values; kv_valid / kv_len may be
               traced (segment ids). Raises AttentionUnavailableError off TPU.
  splash_interpret  the same kernels through the Pallas interpreter, any backend (slow;
               for tests on CPU).

Mask fields given as NumPy stay NumPy, so a mask built from NumPy ids inside a jitted
function is still static there (for kernels that build their mask when traced, such as
splash); anything else becomes a jax array.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

_NEG_INF = -1e30  # finite, so fully masked rows give uniform weights instead of NaN


class AttentionUnavailableError(RuntimeError):
  """The requested attention implementation cannot run here (backend, dtype, shape)."""


def _field(x, dtype):
  """A mask field: NumPy inputs (and lists, scalars) stay NumPy (static under jit), jax
  arrays stay jax arrays."""
  return x.astype(dtype) if isinstance(x, jax.Array) else np.asarray(x, dtype)


def _both(np_fn, jnp_fn, a, b):
  """np_fn(a, b) when both are NumPy (the result stays static), else jnp_fn(a, b)."""
  return np_fn(a, b) if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) else jnp_fn(a, b)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AttentionMask:
  """Which keys each query may attend to (see module docstring). A pytree.

  Attributes:
    q_block: int[T] or int[B, T], block id of each query token, or None.
    kv_block: int[S] or int[B, S], block id of each key token, or None.
    kv_valid: bool[S] or bool[B, S], False for keys to ignore, or None.
    allowed: bool[T, S] or bool[B, T, S], an explicit dense mask, or None.
    kv_len: int[] or int[B], number of leading keys seen (keys s >= kv_len are ignored),
      or None.
  """
  q_block: jax.Array | None = None
  kv_block: jax.Array | None = None
  kv_valid: jax.Array | None = None
  allowed: jax.Array | None = None
  kv_len: jax.Array | None = None

  @classmethod
  def full(cls) -> "AttentionMask":
    """Every query sees every key."""
    return cls()

  @classmethod
  def block_causal(cls, q_block, kv_block) -> "AttentionMask":
    """Query i sees key j when kv_block[j] <= q_block[i]."""
    if (q_block is None) != (kv_block is None):
      raise ValueError("block_causal needs both q_block and kv_block")
    return cls(q_block=_field(q_block, np.int32), kv_block=_field(kv_block, np.int32))

  @classmethod
  def key_valid(cls, kv_valid) -> "AttentionMask":
    """Only keys with kv_valid[j] (bool[S] or bool[B, S]) are seen."""
    return cls(kv_valid=_field(kv_valid, bool))

  @classmethod
  def key_prefix(cls, kv_len) -> "AttentionMask":
    """Only the first kv_len keys (int[] or int[B]) are seen."""
    return cls(kv_len=_field(kv_len, np.int32))

  @classmethod
  def dense_allowed(cls, allowed) -> "AttentionMask":
    """Query t sees key s where allowed[(b,) t, s] (bool[T, S] or bool[B, T, S])."""
    return cls(allowed=_field(allowed, bool))

  @property
  def kind(self) -> str:
    """'full' or '+'-joined parts of 'block_causal', 'key_valid', 'allowed', 'key_prefix'."""
    parts = (["block_causal"] if self.q_block is not None else []) + (
        ["key_valid"] if self.kv_valid is not None else []) + (
        ["allowed"] if self.allowed is not None else []) + (
        ["key_prefix"] if self.kv_len is not None else [])
    return "+".join(parts) or "full"

  @property
  def is_full(self) -> bool:
    return (self.q_block is None and self.kv_valid is None and self.allowed is None
            and self.kv_len is None)

  def prefix_as_valid(self, num_kv: int) -> "AttentionMask":
    """The same mask with `kv_len` folded into `kv_valid` (for code that reads kv_valid)."""
    if self.kv_len is None:
      return self
    prefix = jnp.arange(num_kv)[None, :] < jnp.atleast_1d(self.kv_len)[:, None]
    return dataclasses.replace(self, kv_len=None) & AttentionMask.key_valid(prefix)

  def __and__(self, other: "AttentionMask") -> "AttentionMask":
    """Both masks must allow a (query, key) pair."""
    if self.q_block is not None and other.q_block is not None:
      raise ValueError("cannot combine two block-causal masks; build one with joint block ids")
    q_block, kv_block = ((self.q_block, self.kv_block) if self.q_block is not None
                         else (other.q_block, other.kv_block))
    if self.kv_valid is None or other.kv_valid is None:
      kv_valid = self.kv_valid if other.kv_valid is None else other.kv_valid
    else:
      kv_valid = _both(np.logical_and, jnp.logical_and, self.kv_valid, other.kv_valid)
    if self.allowed is None or other.allowed is None:
      allowed = self.allowed if other.allowed is None else other.allowed
    else:
      allowed = _both(np.logical_and, jnp.logical_and, self.allowed, other.allowed)
    if self.kv_len is None or other.kv_len is None:
      kv_len = self.kv_len if other.kv_len is None else other.kv_len
    else:
      kv_len = _both(np.minimum, jnp.minimum, self.kv_len, other.kv_len)
    return AttentionMask(q_block, kv_block, kv_valid, allowed, kv_len)

  def check(self, num_q: int, num_kv: int, batch: int | None = None) -> None:
    """Raises ValueError if the mask does not fit T=num_q queries, S=num_kv keys."""
    for name, arr, n, what in (("q_block", self.q_block, num_q, "queries T"),
                               ("kv_block", self.kv_block, num_kv, "keys S"),
                               ("kv_valid", self.kv_valid, num_kv, "keys S")):
      if arr is None:
        continue
      if arr.ndim not in (1, 2) or arr.shape[-1] != n or (
          arr.ndim == 2 and batch is not None and arr.shape[0] not in (1, batch)):
        raise ValueError(
            f"attention mask field {name} has shape {tuple(arr.shape)}; expected [{n}] or "
            f"[B, {n}] with {what}={n}" + (f" and B={batch}" if batch is not None else ""))
    n = self.kv_len
    if n is not None and (n.ndim > 1 or (n.ndim == 1 and batch is not None
                                         and n.shape[0] not in (1, batch))):
      raise ValueError(f"attention mask field kv_len has shape {tuple(n.shape)}; expected [] or "
                       f"[B]" + (f" with B={batch}" if batch is not None else ""))
    a = self.allowed
    if a is not None and (a.ndim not in (2, 3) or a.shape[-2:] != (num_q, num_kv) or (
        a.ndim == 3 and batch is not None and a.shape[0] not in (1, batch))):
      raise ValueError(
          f"attention mask field allowed has shape {tuple(a.shape)}; expected [{num_q}, {num_kv}] "
          f"or [B, {num_q}, {num_kv}] (queries T={num_q}, keys S={num_kv})"
          + (f" with B={batch}" if batch is not None else ""))

  def dense(self, num_q: int, num_kv: int) -> jax.Array:
    """bool[B or 1, T, S]: True where query t may attend to key s."""
    self.check(num_q, num_kv)
    m = jnp.ones((1, num_q, num_kv), bool)
    if self.q_block is not None:
      qb = jnp.atleast_2d(self.q_block)[:, :, None]
      kb = jnp.atleast_2d(self.kv_block)[:, None, :]
      m = jnp.logical_and(m, kb <= qb)
    if self.kv_valid is not None:
      m = jnp.logical_and(m, jnp.atleast_2d(self.kv_valid)[:, None, :])
    if self.allowed is not None:
      m = jnp.logical_and(m, self.allowed if self.allowed.ndim == 3 else self.allowed[None])
    if self.kv_len is not None:
      m = jnp.logical_and(m, jnp.arange(num_kv)[None, None, :]
                          < jnp.atleast_1d(self.kv_len)[:, None, None])
    return m


def frame_block_ids(block_of_frame, tokens_per_frame: int) -> jax.Array:
  """int[..., F] block id per frame -> int[..., F * P] per token (P = tokens_per_frame)."""
  block_of_frame = jnp.asarray(block_of_frame, jnp.int32)
  return jnp.repeat(block_of_frame, tokens_per_frame, axis=-1,
                    total_repeat_length=block_of_frame.shape[-1] * tokens_per_frame)


def chunk_ids(num_frames: int, chunk_frames: int, first_chunk: int = 0) -> np.ndarray:
  """int[F]: chunk id of each frame when frames are grouped `chunk_frames` at a time."""
  if chunk_frames <= 0:
    raise ValueError(f"chunk_frames must be positive, got {chunk_frames}")
  return first_chunk + np.arange(num_frames, dtype=np.int32) // chunk_frames


# ----------------------------------------------------------------------------- implementations

AttentionFn = Callable[[jax.Array, jax.Array, jax.Array, AttentionMask, float], jax.Array]
_IMPLS: dict[str, AttentionFn] = {}


def register_attention_impl(name: str, fn: AttentionFn) -> None:
  """Adds an implementation `fn(q, k, v, mask, scale) -> out` under `name`."""
  _IMPLS[name] = fn


def attention_impls() -> list[str]:
  return sorted(_IMPLS)


def _dot_product(q, k, v, mask: AttentionMask, scale: float) -> jax.Array:
  logits = jnp.einsum("btnh,bsnh->bnts", q, k, preferred_element_type=jnp.float32) * scale
  if not mask.is_full:
    logits = jnp.where(mask.dense(q.shape[1], k.shape[1])[:, None], logits, _NEG_INF)
  probs = jax.nn.softmax(logits, axis=-1)
  out = jnp.einsum("bnts,bsnh->btnh", probs.astype(v.dtype), v,
                   preferred_element_type=jnp.float32)
  return out.astype(q.dtype)


def _jax_nn(implementation: str) -> AttentionFn:
  def fn(q, k, v, mask: AttentionMask, scale: float) -> jax.Array:
    if mask.kind == "key_prefix":   # a sequence length: no dense mask in memory
      lengths = jnp.broadcast_to(mask.kv_len, (q.shape[0],)).astype(jnp.int32)
      return jax.nn.dot_product_attention(q, k, v, scale=scale, key_value_seq_lengths=lengths,
                                          implementation=implementation)
    dense = None if mask.is_full else mask.dense(q.shape[1], k.shape[1])[:, None]
    return jax.nn.dot_product_attention(q, k, v, mask=dense, scale=scale,
                                        implementation=implementation)
  return fn


def _cudnn(q, k, v, mask: AttentionMask, scale: float) -> jax.Array:
  backend = jax.default_backend()
  if backend not in ("gpu", "cuda"):
    raise AttentionUnavailableError(
        f"attention impl 'cudnn' needs an NVIDIA GPU, but the JAX backend is {backend!r}; "
        f"use impl='dot_product' (set config.model.attention_impl)")
  if q.dtype not in (jnp.bfloat16, jnp.float16):
    raise AttentionUnavailableError(
        f"attention impl 'cudnn' needs bfloat16/float16 inputs, got {q.dtype}; set "
        f"config.model.dtype='bfloat16' or use impl='dot_product'")
  return _jax_nn("cudnn")(q, k, v, mask, scale)


register_attention_impl("dot_product", _dot_product)
register_attention_impl("xla", _jax_nn("xla"))
register_attention_impl("cudnn", _cudnn)


def _blockwise(q, k, v, mask: AttentionMask, scale: float) -> jax.Array:
  from realcam_jax.scale.blockwise_attention import blockwise_attention  # no import cycle
  return blockwise_attention(q, k, v, mask, scale)


register_attention_impl("blockwise", _blockwise)


def _splash(interpret: bool) -> AttentionFn:
  def fn(q, k, v, mask: AttentionMask, scale: float) -> jax.Array:
    backend = jax.default_backend()
    if not interpret and backend != "tpu":
      raise AttentionUnavailableError(
          f"attention impl 'splash' needs a TPU, but the JAX backend is {backend!r}; use "
          f"impl='blockwise' (any backend, same O(T) memory) or 'splash_interpret' (the same "
          f"kernels in the Pallas interpreter: slow, for tests) via config.model.attention_impl")
    from realcam_jax.scale.splash_attention import splash_attention  # pallas: import on use
    return splash_attention(q, k, v, mask, scale, interpret=interpret)
  return fn


register_attention_impl("splash", _splash(interpret=False))
register_attention_impl("splash_interpret", _splash(interpret=True))


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: AttentionMask | None = None,
              impl: str = "dot_product", *, scale: float | None = None) -> jax.Array:
  """Multi-head attention.

  Args:
    q: [B, T, N, H] queries.
    k: [B, S, N, H] keys.
    v: [B, S, N, H] values.
    mask: which keys each query sees (None = full).
    impl: registered implementation name (see `attention_impls()`).
    scale: logit scale, default 1/sqrt(H).

  Returns:
    [B, T, N, H] in q's dtype.
  """
  if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
    raise ValueError(f"attention expects q, k, v of rank 4 [B, T|S, N, H]; got shapes "
                     f"{q.shape}, {k.shape}, {v.shape}")
  if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
    raise ValueError(f"attention shapes do not agree: q {q.shape} [B, T, N, H], "
                     f"k {k.shape} and v {v.shape} must be [B, S, N, H] with the same B, N, H")
  if impl not in _IMPLS:
    raise ValueError(f"unknown attention impl {impl!r}; registered: {attention_impls()}")
  mask = AttentionMask() if mask is None else mask
  mask.check(q.shape[1], k.shape[1], q.shape[0])
  scale = q.shape[-1] ** -0.5 if scale is None else scale
  return _IMPLS[impl](q, k, v, mask, scale)

"""Memory-efficient (flash-style) attention in plain JAX, for long sequences on any backend.

`blockwise_attention(q, k, v, mask, scale)` equals the reference `dot_product`
attention but never materialises the [B, N, T, S] scores: it scans over blocks of
`block` keys with an online softmax and saves only the output and the row
log-sum-exp for the backward pass, which recomputes each block (a custom VJP, as in
FlashAttention-2). Memory: O(B N T block) transient instead of O(B N T S) saved per
layer. At the 65.5k-token teacher sequence that is the difference between ~206 GB of
f32 scores per sample and layer and ~1.6 GB transient (block 512).

Queries are not blocked, so under the `context` rule table the token axis of q stays
sharded over the `context` mesh axis and XLA gathers k/v for the key scan
(all-gather-KV context parallelism). On TPU a Pallas splash-attention kernel keeps the
per-block scores in VMEM as well; this implementation is the portable reference with
the same O(T) memory in HBM for what is saved.

Registered as attention impl `blockwise` (`config.model.attention_impl`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

DEFAULT_BLOCK = 512
_MASKED = -1e30   # masked keys (finite, like `dot_product`: a row with no key is uniform)


def fit_block(s: int, block: int) -> int:
  """The key block size used for S = s keys: `block` shrunk to a divisor of s when one
  lies in [block / 2, block] (65520 teacher tokens -> 504), so no padding is needed;
  else `block` with the last block padded (and masked)."""
  block = int(min(block, s))
  for b in range(block, block // 2 - 1, -1):
    if s % b == 0:
      return b
  return block


def _blocks(x, axis: int, block: int, nb: int, fill):
  """Pads `axis` to nb * block and moves the block index to the front: [nb, ..., block, ...]."""
  pad = nb * block - x.shape[axis]
  if pad:
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    x = jnp.pad(x, widths, constant_values=fill)
  x = x.reshape(x.shape[:axis] + (nb, block) + x.shape[axis + 1:])
  return jnp.moveaxis(x, axis, 0)


def _kv_side(mask, s: int, block: int, nb: int):
  """Per-block key-side mask data, stacked on a leading block axis, all float.

  Masks are applied as float penalties, never as booleans inside the key scan: under an
  outer `jax.checkpoint` (layer remat), boolean intermediates of the scan are kept as
  residuals whatever the policy, which would store a [blocks, B, N, T, block] mask.
  """
  f32 = jnp.float32
  kv_block = (None if mask.kv_block is None else
              _blocks(jnp.atleast_2d(mask.kv_block).astype(f32), 1, block, nb, 0.0))
  kv_invalid = (None if mask.kv_valid is None else
                _blocks(1.0 - jnp.atleast_2d(mask.kv_valid).astype(f32), 1, block, nb, 0.0))
  disallowed = None
  if mask.allowed is not None:
    a = mask.allowed if mask.allowed.ndim == 3 else mask.allowed[None]
    disallowed = _blocks(1.0 - a.astype(f32), 2, block, nb, 0.0)       # [nb, B|1, T, block]
  pad = (None if nb * block == s else                                  # [nb, 1, block]: 0 | -inf
         _blocks(jnp.zeros((1, s), f32), 1, block, nb, -jnp.inf))
  return kv_block, kv_invalid, disallowed, pad


def _block_logits(q, kb, xs, q_block, scale):
  """Scores [B, N, T, block] f32 of q against one key block, masked."""
  _, kv_block, kv_invalid, disallowed, pad = xs
  s = jnp.einsum("btnh,bsnh->bnts", q, kb, preferred_element_type=jnp.float32) * scale
  penalty = None                                   # > 0 where the key is masked
  if q_block is not None:
    qb = jnp.atleast_2d(q_block).astype(jnp.float32)[:, :, None]
    penalty = jnp.clip(kv_block[:, None, :] - qb, 0.0, 1.0)           # [B|1, T, block]
  if kv_invalid is not None:
    penalty = kv_invalid[:, None, :] if penalty is None else penalty + kv_invalid[:, None, :]
  if disallowed is not None:
    penalty = disallowed if penalty is None else penalty + disallowed
  if penalty is not None:   # == where(allowed, s, _MASKED), as in `dot_product`
    s = jnp.maximum(s + _MASKED * penalty[:, None], _MASKED)
  if pad is not None:
    s = s + pad[:, None, None, :]                                      # padding: exactly 0
  return s


def _forward(q, k, v, mask, scale, block):
  b, t, n, h = q.shape
  s = k.shape[1]
  nb = -(-s // block)
  kb, vb = _blocks(k, 1, block, nb, 0), _blocks(v, 1, block, nb, 0)  # [nb, B, block, N, H]
  side = _kv_side(mask, s, block, nb)

  def step(carry, xs):
    m_prev, l_prev, acc = carry
    kblk, vblk = xs[0], xs[1]
    logits = _block_logits(q, kblk, (None,) + xs[2:], mask.q_block, scale)
    m_new = jnp.maximum(m_prev, logits.max(-1))                          # [B, N, T]
    p = jnp.exp(logits - m_new[..., None])
    corr = jnp.exp(m_prev - m_new)
    l_new = l_prev * corr + p.sum(-1)
    pv = jnp.einsum("bnts,bsnh->btnh", p.astype(v.dtype), vblk,
                    preferred_element_type=jnp.float32)
    acc = acc * jnp.moveaxis(corr, 1, 2)[..., None] + pv
    return (m_new, l_new, acc), None

  init = (jnp.full((b, n, t), -jnp.inf, jnp.float32), jnp.zeros((b, n, t), jnp.float32),
          jnp.zeros((b, t, n, h), jnp.float32))
  (m, l, acc), _ = jax.lax.scan(step, init, (kb, vb) + side)
  out = (acc / jnp.moveaxis(l, 1, 2)[..., None]).astype(q.dtype)
  return out, m + jnp.log(l)                                              # lse f32[B, N, T]


def _backward(q, k, v, mask, scale, block, out, lse, dout):
  s = k.shape[1]
  nb = -(-s // block)
  kb, vb = _blocks(k, 1, block, nb, 0), _blocks(v, 1, block, nb, 0)
  side = _kv_side(mask, s, block, nb)
  dout = dout.astype(jnp.float32)
  delta = jnp.einsum("btnh,btnh->bnt", dout, out.astype(jnp.float32))    # [B, N, T]

  def step(dq, xs):
    kblk, vblk = xs[0], xs[1]
    logits = _block_logits(q, kblk, (None,) + xs[2:], mask.q_block, scale)
    p = jnp.exp(logits - lse[..., None])                                  # [B, N, T, block]
    dv = jnp.einsum("bnts,btnh->bsnh", p, dout)
    dp = jnp.einsum("btnh,bsnh->bnts", dout, vblk.astype(jnp.float32))
    ds = p * (dp - delta[..., None]) * scale
    dq = dq + jnp.einsum("bnts,bsnh->btnh", ds, kblk.astype(jnp.float32))
    dk = jnp.einsum("bnts,btnh->bsnh", ds, q.astype(jnp.float32))
    return dq, (dk, dv)

  dq, (dk, dv) = jax.lax.scan(step, jnp.zeros(q.shape, jnp.float32), (kb, vb) + side)
  unblock = lambda x: jnp.moveaxis(x, 0, 1).reshape((x.shape[1], nb * block) + x.shape[3:])[:, :s]
  return dq.astype(q.dtype), unblock(dk).astype(k.dtype), unblock(dv).astype(v.dtype)


def _zero_cotangent(x):
  if x is None:
    return None
  if jnp.issubdtype(x.dtype, jnp.floating):
    return jnp.zeros_like(x)
  return jnp.zeros(x.shape, jax.dtypes.float0)


def blockwise_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask, scale: float,
                        block: int = DEFAULT_BLOCK) -> jax.Array:
  """Attention over key blocks of `block` (see module docstring).

  Args:
    q: [B, T, N, H]; k, v: [B, S, N, H].
    mask: an `AttentionMask` (any fields).
    scale: logit scale.
    block: keys per block, at most (see `fit_block`).

  Returns:
    [B, T, N, H] in q's dtype.
  """
  block = fit_block(k.shape[1], block)
  mask = mask.prefix_as_valid(k.shape[1])   # a key-prefix length becomes per-key validity

  @jax.custom_vjp
  def attend(q, k, v, mask):
    return _forward(q, k, v, mask, scale, block)[0]

  def fwd(q, k, v, mask):
    out, lse = _forward(q, k, v, mask, scale, block)
    return out, (q, k, v, mask, out, lse)

  def bwd(res, dout):
    q, k, v, mask, out, lse = res
    dq, dk, dv = _backward(q, k, v, mask, scale, block, out, lse, dout)
    return dq, dk, dv, jax.tree.map(_zero_cotangent, mask)

  attend.defvjp(fwd, bwd)
  return attend(q, k, v, mask)

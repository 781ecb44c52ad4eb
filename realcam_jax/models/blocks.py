"""One Wan transformer block: modulated self-attention (RoPE, q/k RMSNorm), cross-attention
to text, modulated gelu-tanh FFN. Names follow diffusers `WanTransformerBlock`:

  attn1/{to_q, to_k, to_v, to_out, norm_q, norm_k}   self-attention
  attn2/{to_q, to_k, to_v, to_out, norm_q, norm_k}   cross-attention
  norm2/{scale, bias}                                  affine LayerNorm before attn2
  ffn/{fc1, fc2}                                       diffusers ffn.net.0.proj, ffn.net.2
  scale_shift_table [1, 6, D]                          learned modulation offsets
  cond_proj (only when block_cond_dim > 0)             zero-initialised hook

Tokens stay [B, F, P, D] so per-frame modulation is [B, F, 1, D]; they are
flattened to [B, T = F * P, D] only inside attention.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from realcam_jax import sharding
from realcam_jax.models import layers
from realcam_jax.models.attention import AttentionMask, attention
from realcam_jax.models.rope import apply_rope


class KV(NamedTuple):
  """Post-RoPE keys and values: k, v [B, S, N, H] (or [L, B, S, N, H] across layers).

  Cached keys keep the rotation of the position they were computed at; a reader that
  wants them elsewhere rotates them further (`BlockInputs.extra_cos/extra_sin`).
  """
  k: jax.Array
  v: jax.Array


def kv_segments(extra_kv) -> tuple[KV, ...]:
  """Extra keys/values as a tuple of segments: None -> (), one KV -> (kv,), a tuple or list
  of KVs (attended to in that order, e.g. a chunk's source keys, then the cache) as is."""
  if extra_kv is None:
    return ()
  return (extra_kv,) if isinstance(extra_kv, KV) else tuple(extra_kv)


class BlockInputs(NamedTuple):
  """Layer-invariant inputs of every block (closed over by the layer scan).

  Attributes:
    e: f32[B, F, 6, D] modulation from the timestep embedding.
    context: [B, L, D] projected text.
    cos, sin: f32[(B,) T, H // 2] RoPE tables for the current tokens.
    mask: self-attention mask over keys [current (T) ; extra_kv (S, its segments in order)].
    block_cond: [B, F, P or 1, Cb] or None.
    block_cond_mask: [B, F] (1 = apply) or None.
    extra_cos, extra_sin: f32[(B,) S, H // 2] an extra RoPE rotation applied to the cached
      keys `extra_kv` before attention (re-positions them; RoPE rotations compose), or None.
  """
  e: jax.Array
  context: jax.Array
  cos: jax.Array
  sin: jax.Array
  mask: AttentionMask
  block_cond: jax.Array | None = None
  block_cond_mask: jax.Array | None = None
  extra_cos: jax.Array | None = None
  extra_sin: jax.Array | None = None


class WanAttention(nnx.Module):
  """Multi-head attention with RMSNorm over the full N*H width on q and k."""

  def __init__(self, dim: int, num_heads: int, *, eps: float, impl: str, dtype, param_dtype,
               rngs: nnx.Rngs):
    self.num_heads = num_heads
    self.head_dim = dim // num_heads
    self.impl = impl
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.to_q = layers.Linear(dim, dim, axes=("embed", "heads"), **kw)
    self.to_k = layers.Linear(dim, dim, axes=("embed", "heads"), **kw)
    self.to_v = layers.Linear(dim, dim, axes=("embed", "heads"), **kw)
    self.to_out = layers.Linear(dim, dim, axes=("heads", "embed"), **kw)
    self.norm_q = layers.RMSNorm(dim, eps=eps, axes=("heads",), param_dtype=param_dtype, rngs=rngs)
    self.norm_k = layers.RMSNorm(dim, eps=eps, axes=("heads",), param_dtype=param_dtype, rngs=rngs)
    self.dtype = dtype

  def _heads(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[:-1] + (self.num_heads, self.head_dim))
    return sharding.constrain(x, ("batch", "length", "act_heads", None))

  def qkv(self, x: jax.Array, kv_source: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """x[B, T, D], kv_source[B, S, D] -> q[B, T, N, H], k, v[B, S, N, H]."""
    q = self.norm_q(self.to_q(x)).astype(self.dtype)
    k = self.norm_k(self.to_k(kv_source)).astype(self.dtype)
    v = self.to_v(kv_source)
    return self._heads(q), self._heads(k), self._heads(v)

  def out(self, o: jax.Array) -> jax.Array:
    """o[B, T, N, H] -> [B, T, D]."""
    return self.to_out(o.reshape(o.shape[:2] + (-1,)))

  def self_attention(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: AttentionMask,
                     extra_kv: KV | tuple[KV, ...] | None,
                     extra_rope: tuple[jax.Array, jax.Array] | None = None
                     ) -> tuple[jax.Array, KV]:
    """x[B, T, D] -> ([B, T, D], KV of the current tokens [B, T, N, H] after RoPE).

    extra_kv: keys/values [B, S, N, H] attended to after the current ones: one KV or a
      tuple of segments (`kv_segments`), joined here, per layer, in order.
    extra_rope: (cos, sin) f32[(B,) S, H // 2] rotating the extra keys (all segments)
      before use, or None.
    """
    q, k, v = self.qkv(x, x)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    current = KV(k, v)
    segments = kv_segments(extra_kv)
    if segments:   # current keys first: a cache filled from the front then leaves a key
      if len(segments) == 1:                            # prefix (AttentionMask.key_prefix)
        extra_k, extra_v = segments[0]
      else:
        extra_k = jnp.concatenate([s.k.astype(k.dtype) for s in segments], axis=1)
        extra_v = jnp.concatenate([s.v.astype(v.dtype) for s in segments], axis=1)
      extra_k = extra_k if extra_rope is None else apply_rope(extra_k, *extra_rope)
      k = jnp.concatenate([k, extra_k.astype(k.dtype)], axis=1)
      v = jnp.concatenate([v, extra_v.astype(v.dtype)], axis=1)
    return self.out(attention(q, k, v, mask, self.impl)), current

  def cross_attention(self, x: jax.Array, context: jax.Array) -> jax.Array:
    """x[B, T, D], context[B, L, D] -> [B, T, D]."""
    q, k, v = self.qkv(x, context)
    return self.out(attention(q, k, v, None, self.impl))


class WanBlock(nnx.Module):
  """A Wan transformer block with optional per-block conditioning hook."""

  def __init__(self, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    dim = cfg.dim
    self.dtype = layers.to_dtype(cfg.dtype)
    param_dtype = layers.to_dtype(cfg.param_dtype)
    self.eps = cfg.eps
    kw = dict(eps=cfg.eps, impl=cfg.attention_impl, dtype=self.dtype, param_dtype=param_dtype,
              rngs=rngs)
    self.attn1 = WanAttention(dim, cfg.num_heads, **kw)
    self.attn2 = WanAttention(dim, cfg.num_heads, **kw)
    self.norm2 = (layers.LayerNorm(dim, eps=cfg.eps, param_dtype=param_dtype, rngs=rngs)
                  if cfg.cross_attn_norm else None)
    self.ffn = layers.FeedForward(dim, cfg.ffn_dim, dtype=self.dtype, param_dtype=param_dtype,
                                  rngs=rngs)
    table_init = jax.nn.initializers.normal(dim ** -0.5)
    self.scale_shift_table = layers.make_param(table_init, rngs, (1, 6, dim), param_dtype,
                                               (None, "modulation", "embed"))
    cond_dim = cfg.get("block_cond_dim", 0)
    self.cond_proj = (layers.Linear(cond_dim, dim, axes=(None, "embed"), kernel_init=layers.zeros,
                                    dtype=self.dtype, param_dtype=param_dtype, rngs=rngs)
                      if cond_dim > 0 else None)

  def __call__(self, x: jax.Array, inputs: BlockInputs,
               extra_kv: KV | tuple[KV, ...] | None = None) -> tuple[jax.Array, KV]:
    """x[B, F, P, D] -> (x[B, F, P, D], current tokens' KV [B, F * P, N, H])."""
    b, f, p, d = x.shape
    mod = self.scale_shift_table[...].astype(jnp.float32)[:, None] + inputs.e  # [B, F, 6, D]
    shift, scale, gate, c_shift, c_scale, c_gate = (mod[:, :, i:i + 1] for i in range(6))

    # 1. Self-attention (+ conditioning hook on its input).
    h = layers.layer_norm(x, self.eps) * (1 + scale) + shift
    if self.cond_proj is not None and inputs.block_cond is not None:
      cond = self.cond_proj(inputs.block_cond).astype(jnp.float32)
      if inputs.block_cond_mask is not None:
        cond = cond * inputs.block_cond_mask.astype(jnp.float32)[:, :, None, None]
      h = h + cond
    h = h.astype(self.dtype).reshape(b, f * p, d)
    extra_rope = None if inputs.extra_cos is None else (inputs.extra_cos, inputs.extra_sin)
    attn, kv = self.attn1.self_attention(h, inputs.cos, inputs.sin, inputs.mask, extra_kv,
                                         extra_rope)
    x = (x.astype(jnp.float32) + attn.reshape(b, f, p, d) * gate).astype(self.dtype)

    # 2. Cross-attention to text.
    h = x if self.norm2 is None else self.norm2(x).astype(self.dtype)
    x = x + self.attn2.cross_attention(h.reshape(b, f * p, d), inputs.context).reshape(b, f, p, d)

    # 3. Feed-forward.
    h = (layers.layer_norm(x, self.eps) * (1 + c_scale) + c_shift).astype(self.dtype)
    x = (x.astype(jnp.float32) + self.ffn(h).astype(jnp.float32) * c_gate).astype(self.dtype)
    return x, kv

"""`UMT5Encoder`: Wan2.1's umT5 text encoder in Flax NNX, numerically identical to
transformers' `UMT5EncoderModel` (and Wan's `wan/modules/t5.py` `T5Encoder`).

Shapes: B batch, L tokens, D width, N heads, H head dim, F FFN width, K position
buckets, V vocabulary, Ly layers.

Parameter tree (Wan's names, `blocks` stacked on a leading 'layers' axis):
  token_embedding/embedding [V, D]
  blocks/norm1/scale [Ly, D]            pre-attention RMSNorm (no mean, no bias)
  blocks/attn/{q,k,v}/kernel [Ly, D, N*H], blocks/attn/o/kernel [Ly, N*H, D]  (no bias)
  blocks/pos_embedding [Ly, K, N]       per-layer relative position bias (umT5: not shared)
  blocks/norm2/scale [Ly, D]
  blocks/ffn/{gate, fc1}/kernel [Ly, D, F], blocks/ffn/fc2/kernel [Ly, F, D]
                                        fc2(gelu_tanh(gate(x)) * fc1(x))
  norm/scale [D]                        final RMSNorm

T5 specifics: attention logits are not scaled by 1/sqrt(H); the bias of bucketed
relative positions (bidirectional, half the buckets exact, the rest log-spaced up
to `max_distance`) is added to them, padded keys get the dtype's minimum.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from realcam_jax import sharding
from realcam_jax.models import layers

_EMBED_INIT = jax.nn.initializers.normal(1.0)
_DENSE_INIT = jax.nn.initializers.normal(0.05)


def relative_position_buckets(length_q: int, length_k: int, num_buckets: int,
                              max_distance: int) -> np.ndarray:
  """int32[Lq, Lk] bucket of `key - query` (T5's bidirectional bucketing)."""
  rel = np.arange(length_k)[None, :] - np.arange(length_q)[:, None]
  half = num_buckets // 2
  buckets = (rel > 0).astype(np.int64) * half
  rel = np.abs(rel)
  max_exact = half // 2
  with np.errstate(divide="ignore"):
    large = max_exact + (np.log(np.maximum(rel, 1) / max_exact) / math.log(max_distance / max_exact)
                         * (half - max_exact)).astype(np.int64)
  large = np.minimum(large, half - 1)
  return (buckets + np.where(rel < max_exact, rel, large)).astype(np.int32)


class Embedding(nnx.Module):
  """Token embedding table [V, D] (logical axes: vocabulary replicated, width sharded)."""

  def __init__(self, vocab: int, dim: int, *, param_dtype, rngs: nnx.Rngs):
    self.embedding = layers.make_param(_EMBED_INIT, rngs, (vocab, dim), param_dtype,
                                       (None, "embed"))

  def __call__(self, ids: jax.Array) -> jax.Array:
    return jnp.take(self.embedding[...], ids, axis=0)


class UMT5Attention(nnx.Module):
  def __init__(self, cfg, *, dtype, param_dtype, rngs: nnx.Rngs):
    inner = cfg.num_heads * cfg.head_dim
    kw = dict(use_bias=False, kernel_init=_DENSE_INIT, dtype=dtype, param_dtype=param_dtype,
              rngs=rngs)
    self.q = layers.Linear(cfg.dim, inner, axes=("embed", "heads"), **kw)
    self.k = layers.Linear(cfg.dim, inner, axes=("embed", "heads"), **kw)
    self.v = layers.Linear(cfg.dim, inner, axes=("embed", "heads"), **kw)
    self.o = layers.Linear(inner, cfg.dim, axes=("heads", "embed"), **kw)
    self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim

  def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
    """x[B, L, D], bias f32[B, N, L, L] (positions + key padding) -> [B, L, D]."""
    b, n = x.shape[0], x.shape[1]
    split = lambda y: y.reshape(b, n, self.num_heads, self.head_dim)
    q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
    logits = jnp.einsum("bqnh,bknh->bnqk", q, k, preferred_element_type=jnp.float32) + bias
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("bnqk,bknh->bqnh", probs, v).reshape(b, n, -1)
    return self.o(out)


class GatedFeedForward(nnx.Module):
  """fc2(gelu_tanh(gate(x)) * fc1(x)) (transformers: wi_0, wi_1, wo)."""

  def __init__(self, cfg, *, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(use_bias=False, kernel_init=_DENSE_INIT, dtype=dtype, param_dtype=param_dtype,
              rngs=rngs)
    self.gate = layers.Linear(cfg.dim, cfg.ffn_dim, axes=("embed", "mlp"), **kw)
    self.fc1 = layers.Linear(cfg.dim, cfg.ffn_dim, axes=("embed", "mlp"), **kw)
    self.fc2 = layers.Linear(cfg.ffn_dim, cfg.dim, axes=("mlp", "embed"), **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(jax.nn.gelu(self.gate(x), approximate=True) * self.fc1(x))


class UMT5Block(nnx.Module):
  def __init__(self, cfg, *, rngs: nnx.Rngs):
    dtype, param_dtype = layers.to_dtype(cfg.dtype), layers.to_dtype(cfg.param_dtype)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.dtype = dtype
    self.norm1 = layers.RMSNorm(cfg.dim, eps=cfg.eps, axes=("embed",), param_dtype=param_dtype,
                                rngs=rngs)
    self.attn = UMT5Attention(cfg, **kw)
    self.pos_embedding = layers.make_param(_DENSE_INIT, rngs, (cfg.num_buckets, cfg.num_heads),
                                           param_dtype, (None, None))
    self.norm2 = layers.RMSNorm(cfg.dim, eps=cfg.eps, axes=("embed",), param_dtype=param_dtype,
                                rngs=rngs)
    self.ffn = GatedFeedForward(cfg, **kw)

  def __call__(self, x: jax.Array, buckets: jax.Array, key_bias: jax.Array) -> jax.Array:
    """x[B, L, D], buckets int32[L, L], key_bias f32[B, 1, 1, L] -> [B, L, D]."""
    pos = jnp.take(self.pos_embedding[...].astype(jnp.float32), buckets, axis=0)  # [L, L, N]
    bias = pos.transpose(2, 0, 1)[None] + key_bias
    x = x + self.attn(self.norm1(x).astype(self.dtype), bias)
    x = x + self.ffn(self.norm2(x).astype(self.dtype))
    return x


class UMT5Encoder(nnx.Module):
  """umT5 encoder stack. Build with `UMT5Encoder(config.text, rngs=nnx.Rngs(seed))`."""

  def __init__(self, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    self.cfg = ml_collections.FrozenConfigDict(cfg)
    self.dtype = layers.to_dtype(cfg.dtype)
    param_dtype = layers.to_dtype(cfg.param_dtype)
    if cfg.num_buckets < 4 or cfg.num_buckets % 4:
      raise ValueError(f"text.num_buckets={cfg.num_buckets}: expected a multiple of 4")
    self.token_embedding = Embedding(cfg.vocab_size, cfg.dim, param_dtype=param_dtype, rngs=rngs)

    @nnx.split_rngs(splits=cfg.num_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make_blocks(rngs):
      return UMT5Block(cfg, rngs=rngs)

    self.blocks = make_blocks(rngs)
    self.norm = layers.RMSNorm(cfg.dim, eps=cfg.eps, axes=("embed",), param_dtype=param_dtype,
                               rngs=rngs)

  def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    """Token ids int[B, L] and mask [B, L] (1 = token, 0 = padding) -> f32[B, L, D].

    Positions under padding hold values too (as in transformers); Wan keeps only the
    first `mask.sum()` of each row (see `realcam_jax.data.text_store`).
    """
    cfg = self.cfg
    if ids.ndim != 2 or tuple(mask.shape) != tuple(ids.shape):
      raise ValueError(f"ids and mask must both be [B, L], got {ids.shape} and {mask.shape}")
    length = ids.shape[1]
    x = self.token_embedding(ids).astype(self.dtype)
    x = sharding.constrain(x, ("batch", "length", "act_embed"))
    buckets = jnp.asarray(relative_position_buckets(length, length, cfg.num_buckets,
                                                    cfg.max_distance))
    key_bias = jnp.where(mask.astype(bool), 0.0, jnp.finfo(jnp.float32).min
                         ).astype(jnp.float32)[:, None, None, :]
    graphdef, state = nnx.split(self.blocks)

    def body(h, layer_state):
      h = nnx.merge(graphdef, layer_state)(h, buckets, key_bias)
      return sharding.constrain(h, ("batch", "length", "act_embed")), None

    if cfg.get("scan_layers", True):
      x, _ = jax.lax.scan(body, x, state)
    else:
      for i in range(cfg.num_layers):
        x, _ = body(x, jax.tree.map(lambda a, i=i: a[i], state))
    return self.norm(x)

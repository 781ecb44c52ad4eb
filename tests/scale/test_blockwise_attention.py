"""`blockwise` attention (flash-style key-block scan, custom VJP) == the dense reference."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realcam_jax.models.attention import AttentionMask, attention
from realcam_jax.scale.blockwise_attention import blockwise_attention, fit_block

B, T, N, H = 2, 12, 2, 8


def _inputs(S=20, seed=0):
  r = np.random.default_rng(seed)
  q, k, v = (r.standard_normal(s).astype(np.float32)
             for s in ((B, T, N, H), (B, S, N, H), (B, S, N, H)))
  return q, k, v


def _masks(S=20):
  r = np.random.default_rng(1)
  valid = r.uniform(size=(B, S)) > 0.3
  return {
      "full": AttentionMask(),
      "block_causal": AttentionMask.block_causal(np.arange(T) // 4 + 2, np.arange(S) // 4),
      "key_valid": AttentionMask.key_valid(valid),
      "allowed": AttentionMask.dense_allowed(r.uniform(size=(T, S)) > 0.2),
      "causal+valid": (AttentionMask.block_causal(np.arange(T) // 4 + 2, np.arange(S) // 4)
                       & AttentionMask.key_valid(valid)),
      "key_prefix": AttentionMask.key_prefix(np.array([S - 3, S // 2])),
  }


@pytest.mark.parametrize("S,block", [(20, 4), (23, 7), (20, 64)])  # divides, pads, one block
@pytest.mark.parametrize("name", list(_masks()))
def test_values_and_gradients_match_dense(name, S, block):
  mask = _masks(S)[name]
  q, k, v = _inputs(S)
  w = np.random.default_rng(2).standard_normal((B, T, N, H)).astype(np.float32)

  def loss(impl):
    def f(q, k, v):
      out = (blockwise_attention(q, k, v, mask, H ** -0.5, block=block) if impl == "blockwise"
             else attention(q, k, v, mask, "dot_product"))
      return jnp.sum(out * w), out
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))

  (_, want), want_g = loss("dot_product")(q, k, v)
  (_, got), got_g = loss("blockwise")(q, k, v)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  for g, wg in zip(got_g, want_g):
    np.testing.assert_allclose(g, wg, rtol=1e-4, atol=1e-5)


def test_registered_impl_and_bf16():
  q, k, v = (jnp.asarray(x, jnp.bfloat16) for x in _inputs())
  got = jax.jit(lambda q, k, v: attention(q, k, v, None, "blockwise"))(q, k, v)
  want = attention(q, k, v, None, "dot_product")
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                             atol=2e-2)


def test_block_size_prefers_a_divisor_of_the_key_count():
  assert fit_block(65520, 512) == 504          # the 81-frame teacher sequence: no padding
  assert fit_block(23, 7) == 7                 # prime: padded
  assert fit_block(20, 64) == 20


def test_scores_are_never_materialised():
  """The compiled forward+backward holds no [B, N, T, S] buffer, only key blocks."""
  t = s = 256
  q = k = v = jax.ShapeDtypeStruct((1, t, 1, 8), jnp.float32)
  f = jax.grad(lambda q, k, v: jnp.sum(blockwise_attention(q, k, v, AttentionMask(), 0.3,
                                                           block=32)), argnums=(0, 1, 2))
  hlo = jax.jit(f).lower(q, k, v).compile().as_text()
  assert f"f32[1,1,{t},{s}]" not in hlo
  assert f"f32[1,1,{t},32]" in hlo


def test_no_stacked_mask_under_layer_remat():
  """Inside a checkpointed layer scan (remat `full`), the key scan keeps no per-block mask
  as a residual (boolean intermediates would be saved whatever the policy)."""
  t, s, n, h, block = 64, 128, 2, 8, 32
  q = jax.ShapeDtypeStruct((1, t, n, h), jnp.float32)
  k = jax.ShapeDtypeStruct((1, s, n, h), jnp.float32)
  mask = (AttentionMask.block_causal(np.arange(t) // 16 + 4, np.arange(s) // 16)
          & AttentionMask.key_valid(np.arange(s) < 120))

  def loss(q, k, v):
    def body(x, _):
      return x + blockwise_attention(x, k, v, mask, 0.3, block=block), None
    body = jax.checkpoint(body, policy=jax.checkpoint_policies.nothing_saveable,
                          prevent_cse=False)
    return jnp.sum(jax.lax.scan(body, q, None, length=2)[0])

  hlo = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, k, k).compile().as_text()
  nb = s // block
  assert not re.search(rf"\[(2,)?{nb},1,({n},)?{t},{block}\]", hlo), "per-block masks are stored"

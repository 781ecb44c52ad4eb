import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realcam_jax.models import attention as attn
from realcam_jax.models.attention import AttentionMask

B, T, S, N, H = 2, 6, 9, 3, 8


def _naive(q, k, v, dense):
  """Plain numpy softmax attention with a dense bool[B or 1, T, S] mask."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
  if dense is not None:
    logits = np.where(dense[:, None], logits, -np.inf)
  logits -= logits.max(-1, keepdims=True)
  p = np.exp(logits)
  p /= p.sum(-1, keepdims=True)
  return np.einsum("bnts,bsnh->btnh", p, v)


def _qkv(seed=0, t=T, s=S):
  r = np.random.default_rng(seed)
  return (r.standard_normal((B, t, N, H)).astype(np.float32),
          r.standard_normal((B, s, N, H)).astype(np.float32),
          r.standard_normal((B, s, N, H)).astype(np.float32))


# Hand-built masks: query blocks and key blocks (the first 3 keys are "cached" block 0).
Q_BLOCK = np.array([1, 1, 1, 2, 2, 2])
KV_BLOCK = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
KV_VALID = np.array([[True] * 9, [False, True, True, True, True, False, True, True, True]])
KV_LEN = np.array([S, 4])   # batch 0 sees every key, batch 1 the first 4


def _hand_block_causal():
  m = np.zeros((1, T, S), bool)
  for i in range(T):
    for j in range(S):
      m[0, i, j] = KV_BLOCK[j] <= Q_BLOCK[i]
  return m


def _hand_prefix():
  m = np.zeros((B, T, S), bool)
  for b in range(B):
    m[b, :, :KV_LEN[b]] = True
  return m


def _hand_valid():
  m = np.zeros((B, T, S), bool)
  for b in range(B):
    for j in range(S):
      m[b, :, j] = KV_VALID[b, j]
  return m


# An explicit dense pattern no block ids can express (per batch: a sink + sliding window).
ALLOWED = np.random.default_rng(5).random((B, T, S)) < 0.6
ALLOWED[:, :, 0] = True

MASKS = {
    "full": (AttentionMask.full(), None),
    "block_causal": (AttentionMask.block_causal(Q_BLOCK, KV_BLOCK), _hand_block_causal()),
    "key_valid": (AttentionMask.key_valid(KV_VALID), _hand_valid()),
    "both": (AttentionMask.block_causal(Q_BLOCK, KV_BLOCK) & AttentionMask.key_valid(KV_VALID),
             _hand_block_causal() & _hand_valid()),
    "allowed": (AttentionMask.dense_allowed(ALLOWED), ALLOWED),
    "key_prefix": (AttentionMask.key_prefix(KV_LEN), _hand_prefix()),
    "block_causal+key_prefix": (
        AttentionMask.block_causal(Q_BLOCK, KV_BLOCK) & AttentionMask.key_prefix(KV_LEN),
        _hand_block_causal() & _hand_prefix()),
    "key_valid+key_prefix": (   # two prefixes combine to the shorter one
        AttentionMask.key_valid(KV_VALID) & AttentionMask.key_prefix(KV_LEN)
        & AttentionMask.key_prefix(np.array([7, 7])),
        _hand_valid() & _hand_prefix() & (np.arange(S) < 7)[None, None]),
    "block_causal+key_valid+allowed": (
        AttentionMask.block_causal(Q_BLOCK, KV_BLOCK) & AttentionMask.key_valid(KV_VALID)
        & AttentionMask.dense_allowed(ALLOWED[0]),
        _hand_block_causal() & _hand_valid() & ALLOWED[:1]),
}


@pytest.mark.parametrize("name", list(MASKS))
def test_mask_dense_matches_hand_built(name):
  mask, want = MASKS[name]
  got = np.asarray(mask.dense(T, S))
  want = np.ones((1, T, S), bool) if want is None else want
  np.testing.assert_array_equal(np.broadcast_to(got, np.broadcast_shapes(got.shape, want.shape)),
                                np.broadcast_to(want, np.broadcast_shapes(got.shape, want.shape)))
  assert mask.kind == {"both": "block_causal+key_valid"}.get(name, name)


@pytest.mark.parametrize("impl", ["dot_product", "xla"])
@pytest.mark.parametrize("name", list(MASKS))
def test_attention_matches_naive_softmax(name, impl):
  mask, dense = MASKS[name]
  q, k, v = _qkv()
  got = attn.attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), mask, impl=impl)
  np.testing.assert_allclose(np.asarray(got), _naive(q, k, v, dense), rtol=1e-5, atol=1e-5)


def test_batched_block_ids_and_frame_blocks():
  q_block = attn.frame_block_ids(np.array([[0, 1], [1, 1]]), 3)   # per-batch blocks, P=3
  np.testing.assert_array_equal(q_block, [[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
  mask = AttentionMask.block_causal(q_block, q_block)
  dense = np.asarray(mask.dense(6, 6))
  assert dense.shape == (2, 6, 6)
  assert not dense[0, 0, 3] and dense[0, 3, 0] and dense[1, 0, 3]
  np.testing.assert_array_equal(attn.chunk_ids(5, 2, first_chunk=3), [3, 3, 4, 4, 5])


def test_mask_is_a_pytree_usable_under_jit():
  mask = AttentionMask.block_causal(Q_BLOCK, KV_BLOCK) & AttentionMask.key_valid(KV_VALID)
  q, k, v = _qkv(1)
  f = jax.jit(lambda q, k, v, m: attn.attention(q, k, v, m))
  np.testing.assert_allclose(np.asarray(f(q, k, v, mask)), _naive(q, k, v, np.asarray(
      mask.dense(T, S))), rtol=1e-5, atol=1e-5)


def test_masks_built_from_numpy_stay_static_under_jit():
  """NumPy fields stay NumPy inside jit (kernels that need a static mask, splash, read
  them at trace time); jax arrays and traced values stay jax arrays."""
  seen = {}

  @jax.jit
  def f(n):
    mask = (AttentionMask.block_causal(Q_BLOCK, KV_BLOCK) & AttentionMask.key_valid(KV_VALID)
            & AttentionMask.dense_allowed(ALLOWED[0]) & AttentionMask.key_prefix(n))
    seen.update(static=[type(a) for a in (mask.q_block, mask.kv_valid, mask.allowed)],
                traced=isinstance(mask.kv_len, jax.core.Tracer))
    return n

  f(jnp.asarray(KV_LEN))
  assert seen == dict(static=[np.ndarray] * 3, traced=True)
  assert isinstance(AttentionMask.key_valid(jnp.asarray(KV_VALID)).kv_valid, jax.Array)


def test_fully_masked_rows_are_finite():
  q, k, v = _qkv(2)
  mask = AttentionMask.key_valid(np.zeros((B, S), bool))
  assert np.isfinite(np.asarray(attn.attention(q, k, v, mask))).all()


def test_errors_name_the_bad_input():
  q, k, v = _qkv()
  with pytest.raises(ValueError, match="unknown attention impl 'nope'"):
    attn.attention(q, k, v, impl="nope")
  with pytest.raises(ValueError, match="kv_block has shape"):
    attn.attention(q, k, v, AttentionMask.block_causal(Q_BLOCK, KV_BLOCK[:4]))
  with pytest.raises(ValueError, match="shapes do not agree"):
    attn.attention(q, k[:, :, :2], v[:, :, :2])
  with pytest.raises(ValueError, match="field allowed has shape"):
    attn.attention(q, k, v, AttentionMask.dense_allowed(np.ones((T, S - 1), bool)))
  with pytest.raises(ValueError, match=r"field kv_len has shape \(3,\); expected \[\] or \[B\]"):
    attn.attention(q, k, v, AttentionMask.key_prefix(np.array([1, 2, 3])))
  with pytest.raises(ValueError, match="two block-causal"):
    _ = AttentionMask.block_causal(Q_BLOCK, KV_BLOCK) & AttentionMask.block_causal(Q_BLOCK,
                                                                                   KV_BLOCK)


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="checks the CPU error path")
def test_cudnn_unavailable_on_cpu_is_a_clear_error():
  q, k, v = _qkv()
  with pytest.raises(attn.AttentionUnavailableError, match="needs an NVIDIA GPU"):
    attn.attention(q, k, v, impl="cudnn")

"""Splash attention (Pallas, run by the interpreter on CPU) == the dense reference.

Values and gradients w.r.t. q, k, v for the four masks the models use: the teacher's
full attention, the student's block-causal and sink + rolling-window chunk masks over a
whole sequence, and a stream's chunk against its KV cache (current tokens first, then
cache slots; the fill level and the visible slots traced). Sequence lengths are not
multiples of the 128-token blocks, so padding is exercised too.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from realcam_jax.config import get_config
from realcam_jax.models import attention as attn
from realcam_jax.models import causal
from realcam_jax.models.attention import AttentionMask, AttentionUnavailableError
from realcam_jax.models.realcam import RealCamDiT
from realcam_jax.scale import splash_attention as splash
from realcam_jax.testing import random_dit
from realcam_jax.train import state as st

B, N, H = 2, 2, 16
PAIRS, TOKENS = 5, 16            # 5 chunks of one frame pair: T = 2 * 5 * 16 = 160 tokens
T = 2 * PAIRS * TOKENS
CHUNK = 2 * TOKENS               # tokens of one chunk (source + target frame)
SLOTS = 4 * CHUNK                # cache slots of a stream: 4 chunks
RTOL, ATOL = 1e-5, 2e-6


def _qkv(t, s, seed=0):
  r = np.random.default_rng(seed)
  return tuple(jnp.asarray(r.standard_normal(shape), jnp.float32)
               for shape in ((B, t, N, H), (B, s, N, H), (B, s, N, H), (B, t, N, H)))


def _student_model_cfg():
  return get_config("configs/student.py:tiny").model


def _sequence_mask(window):
  """The student's whole-sequence chunk mask (`causal.chunk_mask`), built from NumPy."""
  if not window:
    return causal.chunk_mask(PAIRS, TOKENS, 1, _student_model_cfg())
  return causal.chunk_mask(PAIRS, TOKENS, 1, _student_model_cfg(), sink_chunks=1,
                           window_chunks=window)


# name -> (T queries, S keys, mask builder from the traced arguments, traced arguments)
CASES = {
    "teacher_full": (T, T, lambda: AttentionMask.full(), ()),
    "block_causal": (T, T, lambda: _sequence_mask(0), ()),
    "sink_window": (T, T, lambda: _sequence_mask(2), ()),
    # A stream (causal.chunk_forward): the chunk's own keys first, then the cache, seen up
    # to its fill level (a key prefix; batch element 0 has 2 chunks cached, 1 has 4) ...
    "stream_prefix": (CHUNK, CHUNK + SLOTS, lambda n: AttentionMask.key_prefix(n),
                      (np.array([CHUNK + 2 * CHUNK, CHUNK + SLOTS], np.int32),)),
    # ... or per slot (a named chunk and window: an evicted block in the middle of the ring).
    "stream_slots": (CHUNK, CHUNK + SLOTS, lambda valid: AttentionMask.key_valid(valid),
                     (np.concatenate([np.ones((B, CHUNK), bool), np.repeat(
                         np.array([[1, 1, 0, 0], [1, 0, 1, 1]], bool), CHUNK, axis=1)], 1),)),
}


def _out_and_grads(impl, build_mask, t, s, traced, seed=0):
  """attention(q, k, v) and its q, k, v cotangents for a random output cotangent, jitted
  with `traced` as arguments (so a stream's fill level is a traced value)."""
  q, k, v, ct = _qkv(t, s, seed)

  @jax.jit
  def run(q, k, v, ct, *traced):
    out, vjp = jax.vjp(lambda q, k, v: attn.attention(q, k, v, build_mask(*traced), impl), q, k, v)
    return out, vjp(ct)

  out, grads = run(q, k, v, ct, *traced)
  return np.asarray(out), [np.asarray(g) for g in grads]


@pytest.mark.parametrize("case", list(CASES))
def test_values_and_gradients_equal_dot_product(case):
  t, s, build_mask, traced = CASES[case]
  out, grads = _out_and_grads("splash_interpret", build_mask, t, s, traced)
  ref, ref_grads = _out_and_grads("dot_product", build_mask, t, s, traced)
  np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)
  for name, g, want in zip("qkv", grads, ref_grads):
    np.testing.assert_allclose(g, want, rtol=RTOL, atol=ATOL, err_msg=f"d{name}")


def test_cases_mask_something():
  """The masks differ from full attention (so the cases above test the translation)."""
  for case in ("block_causal", "sink_window", "stream_prefix", "stream_slots"):
    t, s, build_mask, traced = CASES[case]
    dense = np.asarray(build_mask(*traced).dense(t, s))
    assert not dense.all(), case
  # The window drops chunk 1 from chunk 4's view (sink 0 and chunks 2, 3 stay).
  dense = np.asarray(_sequence_mask(2).dense(T, T))[0]
  assert not dense[4 * CHUNK, CHUNK] and dense[4 * CHUNK, 0] and dense[4 * CHUNK, 2 * CHUNK]


def test_per_example_static_masks():
  """Block ids [B, T] that differ per batch element: one kernel per element."""
  t = 96
  ids = np.stack([np.arange(t) // 32, np.arange(t) // 48])
  mask = AttentionMask.block_causal(ids, ids)
  q, k, v, _ = _qkv(t, t, seed=3)
  got = jax.jit(lambda q, k, v: attn.attention(q, k, v, mask, "splash_interpret"))(q, k, v)
  np.testing.assert_allclose(got, attn.attention(q, k, v, mask), rtol=RTOL, atol=ATOL)


def test_teacher_forward_equals_dot_product():
  """The tiny teacher (self- and cross-attention) with splash == with dot_product."""
  cfg = get_config("configs/teacher.py:tiny").model
  graphdef, params = random_dit(cfg, scale=0.2)      # a fresh model outputs zeros
  cfg_splash = cfg.copy_and_resolve_references()
  cfg_splash.attention_impl = "splash_interpret"
  graphdef_splash, _ = st.split_model(RealCamDiT(cfg_splash, rngs=nnx.Rngs(0)))
  r = np.random.default_rng(4)
  src, tgt = (jnp.asarray(r.standard_normal((B, 3, 4, 4, cfg.in_channels)), jnp.float32)
              for _ in range(2))
  sigma = jnp.asarray(r.uniform(0.1, 1.0, (B, 3)), jnp.float32)
  cam = jnp.asarray(r.standard_normal((B, 3, 12)), jnp.float32)
  text = jnp.asarray(r.standard_normal((B, cfg.text_len, cfg.text_dim)), jnp.float32)
  fwd = jax.jit(lambda p, g: st.merge(g, p)(src, tgt, sigma, cam, text), static_argnums=1)
  got, want = np.asarray(fwd(params, graphdef_splash)), np.asarray(fwd(params, graphdef))
  assert np.abs(want).max() > 1e-2
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_student_forward_and_stream_step_equal_dot_product():
  """The tiny student with splash == with dot_product: one whole-sequence forward with
  sink + rolling window (masks built from NumPy inside jit, incl. the copied sinks) and a
  stream step that reads a cache as a traced key prefix."""
  config = get_config("configs/student.py:tiny")
  config.student.chunk_pairs, config.student.sink_chunks, config.student.window_chunks = 1, 1, 1
  graphdef, params = random_dit(config.model, scale=0.2)
  cfg_splash = config.model.copy_and_resolve_references()
  cfg_splash.attention_impl = "splash_interpret"
  graphdef_splash, _ = st.split_model(RealCamDiT(cfg_splash, rngs=nnx.Rngs(0)))
  r = np.random.default_rng(5)
  pairs, c = 4, config.model.in_channels
  src, tgt = (jnp.asarray(r.standard_normal((1, pairs, 4, 4, c)), jnp.float32) for _ in range(2))
  sigma = jnp.asarray(r.uniform(0.1, 1.0, (1, pairs)), jnp.float32)
  cam = jnp.asarray(r.standard_normal((1, pairs, 12)), jnp.float32)
  text = jnp.asarray(r.standard_normal((1, config.model.text_len, config.model.text_dim)),
                     jnp.float32)
  cache = causal.init_student_cache(config, 1, (4, 4))

  def run(g):
    @jax.jit
    def forward_and_step(params, cache):
      model = st.merge(g, params)
      full = causal.full_block_causal(model, src, tgt, sigma, cam, text, chunk_pairs=1,
                                      sink_chunks=1, window_chunks=1)
      cache = causal.commit(model, cache, src[:, :1], tgt[:, :1], jnp.zeros((1, 1)),
                            cam[:, :1], text)
      step = causal.chunk_step(model, cache, src[:, 1:2], tgt[:, 1:2], sigma[:, 1:2],
                               cam[:, 1:2], text)
      return full, step
    return forward_and_step(params, cache)

  got, want = run(graphdef_splash), run(graphdef)
  for g, w in zip(got, want):
    assert np.abs(np.asarray(w)).max() > 1e-2
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5)


def test_traced_block_ids_are_refused():
  ids = np.arange(T) // CHUNK
  q, k, v, _ = _qkv(T, T)
  f = jax.jit(lambda q, k, v, ids: attn.attention(q, k, v, AttentionMask.block_causal(ids, ids),
                                                  "splash_interpret"))
  with pytest.raises(ValueError, match="q_block .*traced"):
    f(q, k, v, ids)


def test_static_rows_without_keys_are_refused():
  q, k, v, _ = _qkv(8, 8)
  mask = AttentionMask.block_causal(np.arange(8), np.arange(8) + 1)   # query 0 sees nothing
  with pytest.raises(ValueError, match=r"1 query rows .* see no key \(first: \[0\]\)"):
    attn.attention(q, k, v, mask, "splash_interpret")


def test_rows_without_valid_keys_are_finite():
  """Rows emptied by a (traced) kv_valid are finite; the other rows stay exact."""
  q, k, v, _ = _qkv(40, 40, seed=6)
  valid = np.ones((B, 40), bool)
  valid[1] = False
  f = jax.jit(lambda q, k, v, m: attn.attention(q, k, v, AttentionMask.key_valid(m),
                                                "splash_interpret"))
  got = np.asarray(f(q, k, v, valid))
  assert np.isfinite(got).all()
  ref = attn.attention(q, k, v, AttentionMask.key_valid(valid))
  np.testing.assert_allclose(got[0], ref[0], rtol=RTOL, atol=ATOL)


def test_splash_needs_a_tpu():
  if jax.default_backend() == "tpu":
    pytest.skip("on a TPU 'splash' runs")
  q, k, v, _ = _qkv(8, 8)
  with pytest.raises(AttentionUnavailableError, match="needs a TPU.*splash_interpret"):
    attn.attention(q, k, v, None, "splash")


@pytest.mark.parametrize("n,want", [(65520, (512, 65536)), (1560, (128, 1664)), (24, (128, 128)),
                                    (512, (512, 512)), (1000, (512, 1024)), (130, (128, 256))])
def test_fit_block(n, want):
  assert splash.fit_block(n) == want
  block, padded = splash.fit_block(n)
  assert block % 128 == 0 and padded % block == 0 and 0 <= padded - n < max(block, n // 16 + 1)


@pytest.mark.parametrize("case", ["teacher_full", "sink_window", "stream_prefix"])
def test_lowers_for_tpu(case):
  """Forward and backward lower to Mosaic TPU kernels (fwd, dq, dkv) without a TPU, in
  bf16 with Wan's head dim 128. Lowering only: compiling needs libtpu."""
  t, s, build_mask, traced = CASES[case]
  q = jax.ShapeDtypeStruct((1, t, N, 128), jnp.bfloat16)
  kv = jax.ShapeDtypeStruct((1, s, N, 128), jnp.bfloat16)
  abstract = [jax.ShapeDtypeStruct(a[:1].shape, a.dtype) for a in traced]

  def f(q, k, v, *traced):
    out, vjp = jax.vjp(lambda q, k, v: splash.splash_attention(q, k, v, build_mask(*traced),
                                                                0.1),
                       q, k, v)
    return out, vjp(out)

  text = jax.jit(f).trace(q, kv, kv, *abstract).lower(lowering_platforms=("tpu",)).as_text()
  assert text.count("tpu_custom_call") == 3

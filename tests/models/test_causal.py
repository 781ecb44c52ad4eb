"""The cache invariant: chunk-by-chunk through the KV cache == one block-causal forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realcam_jax.config import get_config
from realcam_jax.inference import kv_cache as kvc
from realcam_jax.models import causal, layout
from realcam_jax.testing import random_dit
from realcam_jax.train import state as st


@pytest.fixture(scope="module")
def tiny():
  config = get_config("student:tiny")
  return (config,) + random_dit(config.model)


def _inputs(config, pairs, seed=0):
  r = np.random.default_rng(seed)
  h, w, c = 4, 4, config.model.in_channels
  src = r.standard_normal((1, pairs, h, w, c)).astype(np.float32)
  tgt = r.standard_normal((1, pairs, h, w, c)).astype(np.float32)
  sigma = r.uniform(0, 1, (1, pairs)).astype(np.float32)          # arbitrary per frame
  cam = r.standard_normal((1, pairs, 12)).astype(np.float32)
  text = r.standard_normal((1, config.model.text_len, config.model.text_dim)).astype(np.float32)
  return src, tgt, sigma, cam, text


# Every layout / pair-RoPE combination the student allows (prefix + sequential is refused).
MODES = [("interleaved", "shared"), ("interleaved", "sequential"), ("prefix", "shared")]


_MODELS = {}


def _mode(config, mode):
  """(config, graphdef, params) of the tiny student in layout / pair_rope `mode`."""
  config = config.copy_and_resolve_references()
  config.model.layout, config.model.pair_rope = mode
  if mode not in _MODELS:
    _MODELS[mode] = random_dit(config.model)
  return (config,) + _MODELS[mode]


def _stream(config, graphdef, params, chunk_pairs, num_chunks, sink, window, inputs, *,
            explicit_index=False, history=None):
  """Chunk by chunk through the cache: the target halves [B, F, h, w, C] of every chunk.

  history: clean target latents to commit each chunk from (at sigma 0) instead of its
  noisy input."""
  src, tgt, sigma, cam, text = inputs
  config.student.chunk_pairs, config.student.sink_chunks = chunk_pairs, sink
  config.student.window_chunks = window
  cache = causal.init_student_cache(config, 1, (4, 4), num_frames=chunk_pairs * num_chunks)
  assert cache.num_blocks == (num_chunks if window == 0 else sink + window)

  @jax.jit
  def step_and_commit(params, cache, xs, commit_xs):
    model = st.merge(graphdef, params)
    # A stream (no index, no window) reads the cache as a key prefix; naming the chunk and
    # window takes the general per-slot visibility mask instead. Both must agree.
    kw = dict(chunk_index=cache.num_chunks, window_chunks=cache.window_chunks) if (
        explicit_index) else {}
    v = causal.chunk_step(model, cache, *xs, text, **kw)
    return v, causal.commit(model, cache, *commit_xs, text)

  out = []
  for c in range(num_chunks):
    sl = slice(c * chunk_pairs, (c + 1) * chunk_pairs)
    xs = (src[:, sl], tgt[:, sl], sigma[:, sl], cam[:, sl])
    commit_xs = xs if history is None else (src[:, sl], history[:, sl],
                                            np.zeros_like(sigma[:, sl]), cam[:, sl])
    v, cache = step_and_commit(params, cache, xs, commit_xs)
    out.append(np.asarray(layout.split(v, config.model.layout)[1]))
  assert int(cache.num_chunks) == num_chunks
  return np.concatenate(out, axis=1), cache


def _full(config, graphdef, params, chunk_pairs, sink, window, inputs, history=None):
  src, tgt, sigma, cam, text = inputs
  model = st.merge(graphdef, params)
  v = causal.full_block_causal(model, src, tgt, sigma, cam, text, chunk_pairs=chunk_pairs,
                               sink_chunks=sink, window_chunks=window, history_target=history)
  return np.asarray(layout.split(v, config.model.layout)[1])


@pytest.mark.parametrize("mode", MODES, ids="-".join)
@pytest.mark.parametrize("explicit_index", [False, True])   # key-prefix mask / key_valid mask
@pytest.mark.parametrize("chunk_pairs,num_chunks,sink,window", [
    (3, 3, 0, 0),        # unlimited: the cache holds every chunk
    (1, 4, 0, 0),
    (3, 4, 1, 1),        # rolling window + sink; 4 chunks through a 2-block ring
    (1, 6, 1, 2),        # 6 chunks through a 3-block ring (wraps twice; sink/window gap)
])
def test_cached_chunks_equal_full_block_causal(tiny, mode, chunk_pairs, num_chunks, sink, window,
                                               explicit_index):
  config, graphdef, params = _mode(tiny[0], mode)
  inputs = _inputs(config, chunk_pairs * num_chunks, seed=chunk_pairs + window)
  ref = _full(config, graphdef, params, chunk_pairs, sink, window, inputs)
  got, _ = _stream(config, graphdef, params, chunk_pairs, num_chunks, sink, window, inputs,
                   explicit_index=explicit_index)
  np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5)
  # The window matters: without it the later chunks would differ.
  if window:
    ref_all = _full(config, graphdef, params, chunk_pairs, 0, 0, inputs)
    assert np.abs(ref_all - ref)[:, -chunk_pairs:].max() > 1e-4


@pytest.mark.parametrize("mode", MODES, ids="-".join)
def test_clean_history_equals_stream_committing_clean_chunks(tiny, mode):
  """ODE init's clean history: one forward == a stream whose chunks are queried noisy but
  committed from the clean latents at sigma 0 (window + sink, so sink copies are used)."""
  config, graphdef, params = _mode(tiny[0], mode)
  k, n, sink, window = 1, 5, 1, 2
  inputs = _inputs(config, k * n, seed=7)
  clean = np.random.default_rng(8).standard_normal(inputs[1].shape).astype(np.float32)
  ref = _full(config, graphdef, params, k, sink, window, inputs, history=clean)
  got, _ = _stream(config, graphdef, params, k, n, sink, window, inputs, history=clean)
  np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5)
  noisy = _full(config, graphdef, params, k, sink, window, inputs)
  np.testing.assert_allclose(ref[:, :k], noisy[:, :k], rtol=1e-5, atol=1e-6)  # no history
  assert np.abs(ref - noisy)[:, k:].max() > 1e-3                        # history matters


@pytest.mark.parametrize("mode", MODES, ids="-".join)
def test_stream_is_stationary_after_a_jump_of_1e5_chunks(tiny, mode):
  """Identical chunk inputs with the same visible history give the same outputs early in a
  stream and 10^5 chunks later (the cache's counters advanced past a sink/window gap)."""
  config, graphdef, params = _mode(tiny[0], mode)
  k, sink, window, jump = 1, 1, 2, 100_000
  config.student.chunk_pairs, config.student.sink_chunks = k, sink
  config.student.window_chunks = window
  src, tgt, sigma, cam, text = _inputs(config, 8, seed=3)
  xs = lambda c: (src[:, c:c + 1], tgt[:, c:c + 1], sigma[:, c:c + 1], cam[:, c:c + 1])  # noqa

  @jax.jit
  def step_and_commit(params, cache, xs):
    model = st.merge(graphdef, params)
    return causal.chunk_step(model, cache, *xs, text), causal.commit(model, cache, *xs, text)

  cache = causal.init_student_cache(config, 1, (4, 4))
  for c in range(4):                        # chunks 0..3: the ring has wrapped once
    _, cache = step_and_commit(params, cache, xs(c))
  early, late = cache, kvc.advance(cache, jump)   # the same buffer 10^5 chunks later
  np.testing.assert_array_equal(late.block_chunk, [0, jump + 3, jump + 2])
  for c in range(4, 8):                     # the same inputs continue both streams
    a, early = step_and_commit(params, early, xs(c))
    b, late = step_and_commit(params, late, xs(c))
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())
  assert int(late.num_chunks) == jump + 8
  # Positions never leave [0, (S + W + 1) K) pairs, whatever the counter says.
  pos = int(late.query_position(late.num_chunks))
  assert pos == sink + window
  assert int(early.position_shift(early.num_chunks).min()) >= -window


def test_sequence_plan_reference():
  # 5 chunks, 1 sink, window 2: chunk 4 has evicted chunk 1, so it sees a copy of the sink
  # at position 1 (right before its window 2, 3 at 2, 3 minus its shift of 1).
  src, clean, pos, vis = causal.sequence_plan(5, 1, 2)
  np.testing.assert_array_equal(src, [0, 1, 2, 3, 4, 0])
  np.testing.assert_array_equal(pos, [0, 1, 2, 3, 4, 1])
  assert not clean.any()
  want = np.zeros((6, 6), bool)
  for q, seen in {0: [0], 1: [0, 1], 2: [0, 1, 2], 3: [0, 1, 2, 3], 4: [5, 2, 3, 4],
                  5: [5]}.items():
    want[q, seen] = True
  np.testing.assert_array_equal(vis, want)
  # The stream's chunk positions agree: query 4 reads chunks 0, 2, 3 at 0, 1, 2 and sits at 3.
  np.testing.assert_array_equal(kvc.chunk_positions(4, 5, 1, 2)[[0, 2, 3, 4]], [0, 1, 2, 3])
  # Clean history: the queries see clean copies (5..7) of the earlier chunks.
  src, clean, pos, vis = causal.sequence_plan(3, 0, 0, clean_history=True)
  np.testing.assert_array_equal(src, [0, 1, 2, 0, 1, 2])
  np.testing.assert_array_equal(clean, [0, 0, 0, 1, 1, 1])
  np.testing.assert_array_equal(np.flatnonzero(vis[2]), [2, 3, 4])
  np.testing.assert_array_equal(np.flatnonzero(vis[5]), [3, 4, 5])


def test_chunk_mask_reference():
  config = get_config("student:tiny")
  # 4 pairs, chunks of 1 pair, 1 token per frame: chunk ids per frame [0,0,1,1,2,2,3,3].
  m = causal.chunk_mask(4, 1, 1, config.model, sink_chunks=1, window_chunks=1)
  ids = np.repeat(np.arange(4), 2)
  vis = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 1, 1]], bool)
  np.testing.assert_array_equal(np.asarray(m.dense(8, 8))[0], vis[ids][:, ids])
  plain = causal.chunk_mask(4, 1, 2, config.model)
  assert plain.kind == "block_causal"
  np.testing.assert_array_equal(np.asarray(plain.dense(8, 8))[0],
                                (ids // 2)[None, :] <= (ids // 2)[:, None])


def test_cache_visibility_reads_a_larger_cache_as_it_was():
  cache = kvc.init_cache(1, 1, 1, 2, chunk_tokens=1, window_chunks=5, sink_chunks=1)
  for _ in range(6):
    cache = kvc.write(cache, jnp.ones((1, 1, 1, 1, 2)), jnp.ones((1, 1, 1, 1, 2)))
  # Chunk 4 with a window of 2 saw chunks 0 (sink), 2, 3.
  np.testing.assert_array_equal(np.asarray(cache.visible(4, 2))[0], [1, 0, 1, 1, 0, 0])
  np.testing.assert_array_equal(np.asarray(cache.visible(4, 0))[0], [1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(np.asarray(cache.visible(6))[0], cache.kv_valid()[0])


def test_cache_layout_and_errors(tiny):
  config, graphdef, params = tiny
  config = get_config("student:tiny")
  lay = causal.cache_layout(config, (4, 4), num_frames=12)
  assert lay == dict(chunk_tokens=2 * 3 * 4, sink_chunks=0, window_chunks=4, exact=True)
  config.student.window_chunks, config.student.sink_chunks = 2, 1
  assert causal.cache_layout(config, (4, 4))["exact"] is False
  config.model.rope_max_seq_len = 8         # (1 + 2 + 1) chunks of 3 pairs reach position 11
  with pytest.raises(ValueError, match="reaches RoPE position 11, beyond model.rope_max_seq_len=8"):
    causal.cache_layout(config, (4, 4))
  config = get_config("student:tiny")
  model = st.merge(graphdef, params)
  src, tgt, sigma, cam, text = _inputs(config, 4)
  with pytest.raises(ValueError, match="multiple of the chunk size"):
    causal.full_block_causal(model, src, tgt, sigma, cam, text, chunk_pairs=3)
  cache = causal.init_student_cache(config, 1, (4, 4), num_frames=12)
  with pytest.raises(ValueError, match="cache was built for chunks of 24 tokens"):
    causal.chunk_step(model, cache, src[:, :2], tgt[:, :2], sigma[:, :2], cam[:, :2], text)
  bad = get_config("student:tiny")
  bad.model.layout, bad.model.pair_rope = "prefix", "sequential"
  with pytest.raises(ValueError, match="pair_rope 'shared'"):
    causal.check_causal_model(bad.model)


def test_split_merge_chunks_roundtrip():
  x = jnp.arange(2 * 6 * 3).reshape(2, 6, 3)
  c = causal.split_chunks(x, 3)
  assert c.shape == (2, 2, 3, 3)
  np.testing.assert_array_equal(causal.merge_chunks(c), x)
  np.testing.assert_array_equal(c[1, :, 0], x[:, 3])
  assert layout.is_target(3, "interleaved").tolist() == [False, True] * 3

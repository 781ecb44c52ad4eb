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


@pytest.mark.parametrize("explicit_index", [False, True])   # key-prefix mask / key_valid mask
@pytest.mark.parametrize("chunk_pairs,num_chunks,sink,window", [
    (3, 3, 0, 0),        # unlimited: the cache holds every chunk
    (1, 4, 0, 0),
    (3, 4, 1, 1),        # rolling window + sink; 4 chunks through a 2-block ring
    (1, 6, 1, 2),        # 6 chunks through a 3-block ring (wraps twice)
])
def test_cached_chunks_equal_full_block_causal(tiny, chunk_pairs, num_chunks, sink, window,
                                               explicit_index):
  config, graphdef, params = tiny
  pairs = chunk_pairs * num_chunks
  src, tgt, sigma, cam, text = _inputs(config, pairs, seed=chunk_pairs + window)

  @jax.jit
  def full(params):
    model = st.merge(graphdef, params)
    return causal.full_block_causal(model, src, tgt, sigma, cam, text, chunk_pairs=chunk_pairs,
                                    sink_chunks=sink, window_chunks=window)

  config.student.chunk_pairs, config.student.sink_chunks = chunk_pairs, sink
  config.student.window_chunks = window
  cache = causal.init_student_cache(config, 1, (4, 4), num_frames=pairs)
  assert cache.num_blocks == (num_chunks if window == 0 else sink + window)

  @jax.jit
  def step_and_commit(params, cache, xs):
    model = st.merge(graphdef, params)
    # A stream (no index, no window) reads the cache as a key prefix; naming the chunk and
    # window takes the general per-slot visibility mask instead. Both must agree.
    kw = dict(chunk_index=cache.num_chunks, window_chunks=cache.window_chunks) if (
        explicit_index) else {}
    v = causal.chunk_step(model, cache, *xs, text, **kw)
    return v, causal.commit(model, cache, *xs, text)

  ref = np.asarray(full(params))
  chunked = []
  for c in range(num_chunks):
    sl = slice(c * chunk_pairs, (c + 1) * chunk_pairs)
    v, cache = step_and_commit(params, cache, (src[:, sl], tgt[:, sl], sigma[:, sl], cam[:, sl]))
    chunked.append(np.asarray(v))
  # Combined chunk sequences concatenate to the combined full sequence (interleaved layout).
  got = np.concatenate(chunked, axis=1)
  np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5)
  assert int(cache.num_chunks) == num_chunks
  # The window matters: without it the later chunks would differ.
  if window:
    unlimited = st.merge(graphdef, params)
    ref_all = causal.full_block_causal(unlimited, src, tgt, sigma, cam, text,
                                       chunk_pairs=chunk_pairs)
    assert np.abs(np.asarray(ref_all) - ref)[:, -2 * chunk_pairs:].max() > 1e-4


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
  assert lay == dict(chunk_tokens=2 * 3 * 4, sink_chunks=0, window_chunks=4)
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

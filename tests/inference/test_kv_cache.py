import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realcam_jax.inference import kv_cache as kvc


def _chunk(c, t=3):
  # keys whose every entry is the chunk id (so slots are identifiable)
  return jnp.full((2, 1, t, 1, 2), float(c)), jnp.full((2, 1, t, 1, 2), float(-c))


def test_ring_buffer_keeps_sinks_and_last_window():
  cache = kvc.init_cache(2, 1, 1, 2, chunk_tokens=3, window_chunks=2, sink_chunks=1)
  write = jax.jit(kvc.write)
  for c in range(6):
    k, v = _chunk(c)
    cache = write(cache, k, v)
    held = sorted(int(x) for x in cache.block_chunk if x >= 0)
    expected = sorted(set([0]) | set(range(max(1, c - 1), c + 1)))
    assert held == expected, (c, held)
    # slot contents agree with the recorded chunk ids
    ids = np.repeat(np.asarray(cache.block_chunk), 3)
    valid = ids >= 0
    np.testing.assert_array_equal(np.asarray(cache.k[0, 0, :, 0, 0])[valid], ids[valid])
  assert int(cache.num_chunks) == 6
  assert cache.k.shape == (2, 1, 9, 1, 2)


def test_kv_valid_mask_grows_then_saturates():
  cache = kvc.init_cache(1, 2, 1, 2, chunk_tokens=2, window_chunks=3)
  assert not np.asarray(cache.kv_valid()).any()
  for c in range(5):
    cache = kvc.write(cache, jnp.ones((1, 2, 2, 1, 2)), jnp.ones((1, 2, 2, 1, 2)))
    assert np.asarray(cache.kv_valid()).sum(-1).tolist() == [2 * min(c + 1, 3)] * 2


def test_filled_slots_are_always_a_prefix():
  # Sinks, then a ring that wraps twice: the filled slots stay the first filled_len().
  cache = kvc.init_cache(1, 1, 1, 2, chunk_tokens=2, window_chunks=2, sink_chunks=1)
  for c in range(7):
    assert int(cache.filled_len()) == 2 * min(c, 3)
    prefix = np.arange(6) < int(cache.filled_len())
    np.testing.assert_array_equal(np.asarray(cache.kv_valid())[0], prefix)
    np.testing.assert_array_equal(np.asarray(cache.visible(c))[0], prefix)
    cache = kvc.write(cache, jnp.ones((1, 1, 2, 1, 2)), jnp.ones((1, 1, 2, 1, 2)))


def test_visible_chunks_reference():
  # window 2, sink 1: chunk 5 sees 0 (sink), 3, 4 (window) and itself.
  np.testing.assert_array_equal(kvc.visible_chunks(5, 7, 1, 2), [1, 0, 0, 1, 1, 1, 0])
  # large window == plain block-causal
  np.testing.assert_array_equal(kvc.visible_chunks(3, 5, 0, 100), [1, 1, 1, 1, 0])
  chunks = np.array([0, 0, 1, 1, 2])
  m = kvc.dense_chunk_mask(chunks, 0, 100)
  np.testing.assert_array_equal(m, chunks[None, :] <= chunks[:, None])


def test_bad_cache_args():
  with pytest.raises(ValueError, match="window_chunks >= 1"):
    kvc.init_cache(1, 1, 1, 2, chunk_tokens=2, window_chunks=0)
  cache = kvc.init_cache(1, 1, 1, 2, chunk_tokens=2, window_chunks=1)
  with pytest.raises(ValueError, match="chunk has 3 tokens"):
    kvc.write(cache, jnp.ones((1, 1, 3, 1, 2)), jnp.ones((1, 1, 3, 1, 2)))

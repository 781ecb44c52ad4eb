"""Few-step student generation: chunk by chunk (jitted once, cache donated) == one scan."""

import jax
import jax.numpy as jnp
import numpy as np

from realcam_jax.config import get_config
from realcam_jax.inference import student
from realcam_jax.models import causal
from realcam_jax.testing import random_dit


def test_streamed_chunks_equal_generate_video_with_rolling_window():
  config = get_config("student:tiny,window")      # 1 sink + a window of 2 chunks
  config.student.chunk_pairs = 1
  graphdef, params = random_dit(config.model)
  r = np.random.default_rng(0)
  pairs = 6                                       # 6 chunks through a 3-block ring
  src = jnp.asarray(r.standard_normal((1, pairs, 4, 4, config.model.in_channels)), jnp.float32)
  cam = jnp.asarray(r.standard_normal((1, pairs, 12)), jnp.float32)
  sigmas = student.student_sigmas(config)
  key = jax.random.key(3)
  cache0 = causal.init_student_cache(config, 1, (4, 4))
  assert cache0.num_blocks == 3

  step = jax.jit(student.generate_chunk, static_argnums=0, donate_argnums=2)
  cache, outs = cache0, []
  for c in range(pairs):
    cache, x0 = step(graphdef, params, cache, src[:, c:c + 1], cam[:, c:c + 1], None,
                     jax.random.fold_in(key, c), sigmas)
    assert cache.k.shape == cache0.k.shape
    outs.append(np.asarray(x0))
  video = jax.jit(lambda p, c: student.generate_video(graphdef, p, c, src, cam, None, key, sigmas,
                                                      chunk_pairs=1))
  cache_v, x0_v = video(params, causal.init_student_cache(config, 1, (4, 4)))
  np.testing.assert_allclose(np.concatenate(outs, axis=1), x0_v, rtol=1e-5, atol=1e-5)
  assert int(cache.num_chunks) == int(cache_v.num_chunks) == pairs
  np.testing.assert_array_equal(cache.block_chunk, [0, 5, 4])   # sink, ring
  assert np.isfinite(np.asarray(x0_v)).all() and float(jnp.std(x0_v)) > 1e-3


def test_unlimited_cache_refuses_a_clip_longer_than_max_frames():
  config = get_config("student:tiny")             # window_chunks 0: exact, max_frames 12
  graphdef, params = random_dit(config.model)
  cache = causal.init_student_cache(config, 1, (4, 4))
  assert cache.exact and cache.capacity == 4      # 12 latent frames / 3 pairs per chunk
  src = jnp.zeros((1, 15, 4, 4, config.model.in_channels))
  with np.testing.assert_raises_regex(ValueError, "a clip of 15 latent frames reached chunk 5 "
                                      "but the unlimited KV cache .*student.max_frames"):
    student.generate_video(graphdef, params, cache, src, None, None, jax.random.key(0),
                           student.student_sigmas(config), chunk_pairs=3)

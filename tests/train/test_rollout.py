"""Self-Forcing rollout: the two-phase gradient equals the naive single-scan one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realcam_jax.config import get_config
from realcam_jax.inference import student
from realcam_jax.testing import key_with_exit, random_dit
from realcam_jax.train import rollout


@pytest.fixture(scope="module")
def tiny():
  config = get_config("student:tiny")
  return (config,) + random_dit(config.model)


def _inputs(config, batch=2, pairs=6, seed=0):
  r = np.random.default_rng(seed)
  shape = (batch, pairs, 4, 4, config.model.in_channels)
  src = jnp.asarray(r.standard_normal(shape), jnp.float32)
  cam = jnp.asarray(r.standard_normal((batch, pairs, 12)), jnp.float32)
  text = jnp.asarray(r.standard_normal((batch, config.model.text_len, config.model.text_dim)),
                     jnp.float32)
  return src, cam, text


def test_two_phase_gradient_equals_naive(tiny):
  """K=3, 4 chunks, 1 sink + a window of 1: chunk 3 sees chunks 0 and 2 but not 1."""
  config, graphdef, params = tiny
  spec = rollout.RolloutSpec(chunk_pairs=3, sink_chunks=1, window_chunks=1)
  src, cam, text = _inputs(config, pairs=12)
  sigmas = student.student_sigmas(config)
  w = jnp.asarray(np.random.default_rng(1).standard_normal(src.shape), jnp.float32)

  def loss_two_phase(p, key):
    x, one = rollout.rollout(graphdef, p, src, cam, text, key, sigmas, spec)
    return jnp.sum(x * w), (x, rollout.no_grad_samples(one), one.exit_level)

  def loss_naive(p, key):
    x = rollout.rollout_naive(graphdef, p, src, cam, text, key, sigmas, spec)
    return jnp.sum(x * w), x

  g_two = jax.jit(jax.value_and_grad(loss_two_phase, has_aux=True))
  g_naive = jax.jit(jax.value_and_grad(loss_naive, has_aux=True))
  for level in (0, 2, 3):
    key = key_with_exit(level)
    (l2, (x2, x_ng, e)), grad2 = g_two(params, key)
    (l1, x1), grad1 = g_naive(params, key)
    assert int(e) == level
    np.testing.assert_allclose(x2, x1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_ng, x1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(l2, l1, rtol=1e-5)
    flat1, flat2 = jax.tree.leaves(grad1), jax.tree.leaves(grad2)
    assert len(flat1) == len(flat2)
    scale = max(float(jnp.abs(g).max()) for g in flat1)
    assert scale > 0
    for a, b in zip(flat1, flat2):
      np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * scale)


def test_exit_level_is_shared_and_deterministic():
  key = jax.random.key(7)
  k_exit, _ = rollout.split_rollout_key(key)
  levels = {int(rollout.sample_exit_level(k_exit, 4)) for _ in range(3)}
  assert len(levels) == 1
  seen = {int(rollout.sample_exit_level(rollout.split_rollout_key(jax.random.key(s))[0], 4))
          for s in range(64)}
  assert seen == {0, 1, 2, 3}


def test_last_exit_level_is_inference(tiny):
  """A rollout exiting at the last level is exactly `generate_video` with the noise key."""
  config, graphdef, params = tiny
  src, cam, text = _inputs(config, batch=1)
  sigmas = student.student_sigmas(config)
  spec = rollout.RolloutSpec.from_config(config)
  key = key_with_exit(3)
  one = jax.jit(lambda p: rollout.rollout_no_grad(graphdef, p, src, cam, text, key, sigmas,
                                                   spec))(params)
  from realcam_jax.models import causal
  cache = causal.init_student_cache(config, 1, (4, 4), num_frames=6)
  _, x0 = jax.jit(lambda p, c: student.generate_video(
      graphdef, p, c, src, cam, text, rollout.split_rollout_key(key)[1], sigmas,
      chunk_pairs=spec.chunk_pairs))(params, cache)
  np.testing.assert_allclose(rollout.no_grad_samples(one), x0, rtol=1e-5, atol=1e-5)


def test_windowed_rollout_is_a_stream_past_the_sink_window_gap(tiny):
  """Rollouts use the streaming cache geometry: a rollout of 6 chunks with 1 sink + a
  window of 2 (chunks 4 and 5 no longer see chunk 1, and read the sink at the bounded
  positions) equals `generate_video` through the streaming ring buffer."""
  config, graphdef, params = tiny
  config = config.copy_and_resolve_references()
  config.student.chunk_pairs, config.student.sink_chunks, config.student.window_chunks = 1, 1, 2
  src, cam, text = _inputs(config, batch=1, pairs=6, seed=4)
  sigmas = student.student_sigmas(config)
  spec = rollout.RolloutSpec.from_config(config)
  key = key_with_exit(3)
  one = jax.jit(lambda p: rollout.rollout_no_grad(graphdef, p, src, cam, text, key, sigmas,
                                                   spec))(params)
  from realcam_jax.models import causal
  cache = causal.init_student_cache(config, 1, (4, 4))
  assert cache.num_blocks == 3 and not cache.exact
  gen = jax.jit(lambda p, c: student.generate_video(
      graphdef, p, c, src, cam, text, rollout.split_rollout_key(key)[1], sigmas,
      chunk_pairs=1))
  _, x0 = gen(params, cache)
  np.testing.assert_allclose(rollout.no_grad_samples(one), x0, rtol=1e-5, atol=1e-5)
  # Not trivially equal: the unlimited rollout differs once the window has slid.
  full = jax.jit(lambda p: rollout.rollout_no_grad(
      graphdef, p, src, cam, text, key, sigmas, rollout.RolloutSpec(1, 0, 0)))(params)
  diff = np.abs(np.asarray(rollout.no_grad_samples(full) - x0))
  assert diff[:, :4].max() < 1e-5 and diff[:, 4:].max() > 1e-4


def test_long_rollout_ablation_reaches_the_sink_window_gap():
  c = get_config("student:demo,long_rollout")
  s = c.student
  chunks = c.data.latent_frames // s.chunk_pairs
  assert c.data.latent_frames % s.chunk_pairs == 0
  assert chunks >= s.sink_chunks + s.window_chunks + 2 > get_config("student:demo").data.latent_frames // 3
  assert get_config("student:demo,chunk1,long_rollout").data.latent_frames == 9   # already long
  assert get_config("student:demo,ode_clean").student.ode_history == "clean"
  assert get_config("student:demo").student.ode_history == "clean"     # the default
  assert get_config("student:demo,ode_independent").student.ode_history == "independent"

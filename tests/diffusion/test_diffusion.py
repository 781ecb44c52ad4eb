import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from realcam_jax.diffusion import flow_matching as fm
from realcam_jax.diffusion import sampler, schedule


def test_student_schedule_matches_design_values():
  t = np.asarray(schedule.sigma_to_timestep(schedule.student_sigmas([1000, 750, 500, 250], 5.0)))
  np.testing.assert_allclose(t, [1000.0, 937.5, 833.3333, 625.0], rtol=1e-5)


def test_shift_is_identity_at_one_and_monotone():
  s = jnp.linspace(0, 1, 11)
  np.testing.assert_allclose(schedule.shift_sigma(s, 1.0), s, atol=1e-7)
  warped = np.asarray(schedule.shift_sigma(s, 5.0))
  assert np.all(np.diff(warped) > 0) and warped[0] == 0 and warped[-1] == 1
  assert np.all(warped[1:-1] > np.asarray(s)[1:-1])


@pytest.mark.parametrize("bad", [[], [750, 1000], [1000, 0], [1200]])
def test_student_schedule_rejects_bad_lists(bad):
  with pytest.raises(ValueError, match="student timesteps"):
    schedule.student_sigmas(bad, 5.0)


def test_noise_and_x0_are_inverse():
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  x0 = jax.random.normal(k1, (2, 3, 4, 4, 2))
  n = jax.random.normal(k2, x0.shape)
  sig = jax.random.uniform(k3, (2, 3))
  xt = fm.add_noise(x0, n, sig)
  np.testing.assert_allclose(fm.x0_from_velocity(xt, fm.velocity_target(x0, n), sig), x0,
                             atol=1e-5)


def test_laplacian_matches_scipy():
  x = np.random.default_rng(0).normal(size=(1, 2, 6, 7, 3)).astype(np.float32)
  kernel = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
  ref = np.stack([np.stack([ndimage.correlate(x[0, f, :, :, c], kernel)[1:-1, 1:-1]
                            for c in range(3)], -1) for f in range(2)])[None]
  np.testing.assert_allclose(fm.laplacian2d(jnp.asarray(x)), ref, atol=1e-5)


def test_loss_ignores_source_frames():
  rng = np.random.default_rng(1)
  v_pred = rng.normal(size=(2, 4, 5, 5, 2)).astype(np.float32)
  v_tgt = rng.normal(size=v_pred.shape).astype(np.float32)
  weight = np.array([[0, 1, 0, 1]] * 2, np.float32)  # interleaved s, t, s, t
  loss, _ = fm.flow_matching_loss(v_pred, v_tgt, weight, motion_weight=0.1)
  v_pred2 = v_pred.copy()
  v_pred2[:, 0::2] += 100.0
  loss2, _ = fm.flow_matching_loss(v_pred2, v_tgt, weight, motion_weight=0.1)
  np.testing.assert_allclose(loss, loss2, rtol=1e-6)
  v_pred3 = v_pred.copy()
  v_pred3[:, 1] += 1.0
  loss3, _ = fm.flow_matching_loss(v_pred3, v_tgt, weight, motion_weight=0.1)
  assert loss3 > loss + 0.1


def test_loss_formula():
  rng = np.random.default_rng(2)
  v_pred = rng.normal(size=(1, 2, 5, 5, 1)).astype(np.float32)
  v_tgt = rng.normal(size=v_pred.shape).astype(np.float32)
  a = 0.25
  loss, m = fm.flow_matching_loss(v_pred, v_tgt, np.ones((1, 2)), motion_weight=a)
  l_fm = np.mean((v_pred - v_tgt) ** 2)
  lap = lambda v: np.asarray(fm.laplacian2d(jnp.asarray(v)))
  l_mo = np.mean((lap(v_pred) - lap(v_tgt)) ** 2)
  np.testing.assert_allclose(loss, (1 - a) * l_fm + a * l_mo, rtol=1e-5)
  np.testing.assert_allclose(m["loss_fm"], l_fm, rtol=1e-5)


def _exact_velocity(x0):
  # For a point mass at x0 the flow is straight: v(x_t, s) = (x_t - x0) / s.
  return lambda x, s: fm.velocity_from_x0(x, x0, s)


def test_euler_recovers_point_mass():
  x0 = jax.random.normal(jax.random.key(3), (1, 2, 3, 3, 2))
  noise = jax.random.normal(jax.random.key(4), x0.shape)
  sig = schedule.euler_sigmas(7, 5.0)
  out = sampler.euler_sample(_exact_velocity(x0), noise, sig)
  np.testing.assert_allclose(out, x0, atol=1e-4)
  traj = sampler.euler_trajectory(_exact_velocity(x0), noise, sig)
  assert traj.shape == (8,) + x0.shape
  np.testing.assert_allclose(traj[-1], out, atol=1e-6)
  np.testing.assert_allclose(traj[0], noise)


def test_cfg_formula():
  c = lambda x, s: jnp.ones_like(x) * 2.0
  u = lambda x, s: jnp.ones_like(x) * 0.5
  x = jnp.zeros((1, 1, 2, 2, 1))
  np.testing.assert_allclose(sampler.cfg(c, u, 3.0)(x, None), 0.5 + 3.0 * 1.5)
  assert sampler.cfg(c, u, 1.0) is c


def test_few_step_sampler_with_exact_predictor():
  x0 = jax.random.normal(jax.random.key(5), (2, 3, 2, 2, 1))
  noise = jax.random.normal(jax.random.key(6), x0.shape)
  out = sampler.few_step_sample(_exact_velocity(x0), noise,
                                schedule.student_sigmas([1000, 750, 500, 250], 5.0),
                                jax.random.key(7))
  np.testing.assert_allclose(out, x0, atol=1e-4)

"""Slerp interpolation and smooth transitions between camera paths."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

from realcam_jax import camera as cam


def _keys(n=4, seed=0):
  rng = np.random.default_rng(seed)
  return cam.make_pose(Rotation.random(n, random_state=seed).as_matrix(), rng.normal(size=(n, 3)))


def test_interpolation_hits_keyframes_and_stays_a_rotation():
  keys = _keys()
  key_t = np.array([0.0, 0.5, 2.0, 3.0])
  for mode in ("linear", "smooth"):
    np.testing.assert_allclose(cam.interpolate_poses(keys, key_t, key_t, mode), keys, atol=1e-9)
    query = np.linspace(-0.5, 3.5, 57)
    out = cam.interpolate_poses(keys, key_t, query, mode)
    assert cam.is_rotation(out[:, :3, :3], atol=1e-9).all()
    np.testing.assert_allclose(out[0], keys[0], atol=1e-9)  # clamped before the first key
    np.testing.assert_allclose(out[-1], keys[-1], atol=1e-9)


def test_slerp_is_constant_speed_on_the_short_arc():
  r0 = np.eye(3)
  r1 = cam.rotation_y(np.deg2rad(120.0))
  w = np.linspace(0, 1, 7)
  out = cam.slerp_rotation(np.broadcast_to(r0, (7, 3, 3)), np.broadcast_to(r1, (7, 3, 3)), w)
  np.testing.assert_allclose(np.rad2deg(cam.rotation_angle(out)), 120.0 * w, atol=1e-9)
  # Quaternion sign must not matter (q and -q are the same rotation).
  q0 = cam.matrix_to_quaternion(r0)
  q1 = cam.matrix_to_quaternion(r1)
  np.testing.assert_allclose(cam.slerp_quaternion(q0, -q1, 0.5),
                             cam.slerp_quaternion(q0, q1, 0.5), atol=1e-12)


def test_resample_linear_preset_is_exact():
  coarse = cam.get_trajectory("pan_right", 21)
  np.testing.assert_allclose(cam.resample_path(coarse, 81), cam.get_trajectory("pan_right", 81),
                             atol=1e-9)


def test_interpolation_on_jax_matches_numpy():
  keys = _keys(5, seed=2)
  key_t = np.arange(5.0)
  query = np.linspace(0, 4, 23)
  ref = cam.interpolate_poses(keys, key_t, query, "smooth")
  fn = jax.jit(lambda k, t, q: cam.interpolate_poses(k, t, q, "smooth"))
  out = fn(jnp.asarray(keys, jnp.float32), jnp.asarray(key_t, jnp.float32),
           jnp.asarray(query, jnp.float32))
  np.testing.assert_allclose(out, ref, atol=5e-5)


def test_smooth_transition_blends_between_paths():
  current = cam.get_trajectory("pan_left", 30)
  new = cam.get_trajectory("arc_right", 30)
  out = cam.smooth_transition(current, new, start=10, duration=8)
  np.testing.assert_allclose(out[:11], current[:11], atol=1e-12)
  np.testing.assert_allclose(out[18:], new[18:], atol=1e-12)
  assert cam.is_rotation(out[:, :3, :3], atol=1e-9).all()
  mid = out[14, :3, 3]
  gap = np.linalg.norm(new[14, :3, 3] - current[14, :3, 3])
  assert 0 < np.linalg.norm(mid - current[14, :3, 3]) < gap
  step = cam.smooth_transition(current, new, start=10, duration=0)
  np.testing.assert_allclose(step[:10], current[:10], atol=1e-12)
  np.testing.assert_allclose(step[10:], new[10:], atol=1e-12)
  # Traced start/duration under jit (the interactive session's use).
  fn = jax.jit(cam.smooth_transition)
  out_jax = fn(jnp.asarray(current, jnp.float32), jnp.asarray(new, jnp.float32),
               jnp.asarray(10), jnp.asarray(8))
  np.testing.assert_allclose(out_jax, out, atol=1e-5)

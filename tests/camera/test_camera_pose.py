"""Poses, rotations and intrinsics: numpy against scipy/hand math, jax against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from realcam_jax import camera as cam


def _random_poses(n, seed=0):
  rng = np.random.default_rng(seed)
  rot = Rotation.random(n, random_state=seed).as_matrix()
  return cam.make_pose(rot, rng.normal(size=(n, 3)))


def test_rotation_helpers_match_scipy():
  rng = np.random.default_rng(1)
  rotvec = rng.normal(size=(200, 3)) * 1.2
  rotvec[0] = 0.0
  rotvec[1] = [0.0, np.pi, 0.0]
  rotvec[2] = [1e-9, 0.0, 0.0]
  ref = Rotation.from_rotvec(rotvec)
  mats = cam.axis_angle_to_matrix(rotvec)
  np.testing.assert_allclose(mats, ref.as_matrix(), atol=1e-12)
  quat = cam.matrix_to_quaternion(mats)
  ref_q = ref.as_quat()[:, [3, 0, 1, 2]]
  ref_q *= np.where(ref_q[:, :1] < 0, -1, 1)
  np.testing.assert_allclose(quat, ref_q, atol=1e-7)
  np.testing.assert_allclose(cam.quaternion_to_matrix(quat), mats, atol=1e-12)
  back = cam.axis_angle_to_matrix(cam.matrix_to_axis_angle(mats))
  np.testing.assert_allclose(back, mats, atol=1e-7)
  np.testing.assert_allclose(cam.rotation_angle(mats[3:]), ref[3:].magnitude(), atol=1e-7)


def test_rotation_sign_conventions():
  # Positive yaw turns forward (+z) towards +x; positive pitch tilts it towards -y (up).
  fwd_yaw = cam.rotation_y(np.deg2rad(10.0))[:, 2]
  fwd_pitch = cam.rotation_x(np.deg2rad(10.0))[:, 2]
  assert fwd_yaw[0] > 0 and abs(fwd_yaw[1]) < 1e-12
  assert fwd_pitch[1] < 0 and abs(fwd_pitch[0]) < 1e-12


def test_relative_to_and_relative_poses():
  poses = _random_poses(5)
  rel = cam.relative_to(poses, poses[2])
  np.testing.assert_allclose(rel[2], np.eye(4), atol=1e-12)
  np.testing.assert_allclose(poses[2] @ rel, poses, atol=1e-12)
  source = _random_poses(5, seed=3)
  first = cam.relative_poses(poses, "source_first", source)
  np.testing.assert_allclose(first, np.linalg.inv(source[0]) @ poses, atol=1e-12)
  pair = cam.relative_poses(poses, "pair", source)
  np.testing.assert_allclose(pair, np.linalg.inv(source) @ poses, atol=1e-12)
  np.testing.assert_allclose(cam.relative_poses(poses)[0], np.eye(4), atol=1e-12)
  with pytest.raises(ValueError, match="'source_first' or 'pair'"):
    cam.relative_poses(poses, "world")
  with pytest.raises(ValueError, match="needs source_poses"):
    cam.relative_poses(poses, "pair")


def test_pose_to_12_row_major_and_inverse():
  poses = _random_poses(3)
  vec = cam.pose_to_12(poses)
  assert vec.shape == (3, 12)
  np.testing.assert_array_equal(vec[1, :4], poses[1, 0, :4])
  np.testing.assert_array_equal(vec[1, 4:8], poses[1, 1, :4])
  np.testing.assert_array_equal(vec[1, [3, 7, 11]], poses[1, :3, 3])
  np.testing.assert_allclose(cam.pose_from_12(vec), poses)


def test_runtime_functions_work_on_jax_under_jit():
  poses = _random_poses(6)
  source = _random_poses(6, seed=5)

  @jax.jit
  def f(p, s):
    rel = cam.relative_poses(p, "source_first", s)
    return cam.pose_to_12(rel), cam.matrix_to_axis_angle(rel[..., :3, :3])

  vec, rotvec = f(jnp.asarray(poses, jnp.float32), jnp.asarray(source, jnp.float32))
  assert isinstance(vec, jax.Array) and vec.shape == (6, 12)
  ref = cam.relative_poses(poses, "source_first", source)
  np.testing.assert_allclose(vec, cam.pose_to_12(ref), atol=2e-5)
  np.testing.assert_allclose(rotvec, cam.matrix_to_axis_angle(ref[..., :3, :3]), atol=2e-5)


def test_look_at_points_camera_at_target():
  eye = np.array([1.0, -2.0, 0.5])
  target = np.array([3.0, 0.0, 4.0])
  pose = cam.look_at(eye, target)
  assert cam.is_rotation(pose[:3, :3])
  direction = (target - eye) / np.linalg.norm(target - eye)
  np.testing.assert_allclose(pose[:3, 2], direction, atol=1e-12)
  np.testing.assert_allclose(pose[:3, 3], eye)
  assert abs(pose[1, 0]) < 1e-12  # camera x stays horizontal (world y is vertical)
  assert pose[1, 1] > 0  # image down points to world down (+y)
  np.testing.assert_allclose(cam.look_at(np.zeros(3), np.array([0, 0, 2.0])), np.eye(4), atol=1e-12)


def test_is_rotation():
  rot = Rotation.random(4, random_state=0).as_matrix()
  assert cam.is_rotation(rot).all()
  bad = rot.copy()
  bad[0] *= 1.1
  bad[1, :, 0] *= -1  # reflection
  bad[2, 0, 0] = np.nan
  np.testing.assert_array_equal(cam.is_rotation(bad), [False, False, False, True])


def test_intrinsics_from_fov_and_focal():
  K = cam.intrinsics_from_fov(90.0, 640, 480)
  np.testing.assert_allclose(K, [[320, 0, 320], [0, 320, 240], [0, 0, 1]], atol=1e-9)
  fov_x, fov_y = cam.fov_from_intrinsics(K, 640, 480)
  assert abs(fov_x - 90.0) < 1e-9 and fov_y < 90.0
  Kv = cam.intrinsics_from_fov(60.0, 640, 480, axis="vertical")
  assert abs(cam.fov_from_intrinsics(Kv, 640, 480)[1] - 60.0) < 1e-9
  np.testing.assert_array_equal(cam.intrinsics_from_focal(100.0, 110.0, 32.0, 24.0),
                                [[100, 0, 32], [0, 110, 24], [0, 0, 1]])
  with pytest.raises(ValueError, match="field of view"):
    cam.intrinsics_from_fov(180.0, 64, 64)
  with pytest.raises(ValueError, match="fov axis"):
    cam.intrinsics_from_fov(60.0, 64, 64, axis="sideways")


def _project(K, p):
  uvw = K @ p
  return uvw[:2] / uvw[2]


def test_intrinsics_resize_crop_normalise_follow_the_pixels():
  K = cam.intrinsics_from_focal(500.0, 520.0, 330.0, 250.0)
  point = np.array([0.3, -0.2, 2.0])
  uv = _project(K, point)
  # Resize 640x480 -> 320x120: a point lands at the scaled continuous position.
  np.testing.assert_allclose(_project(cam.resize_intrinsics(K, (640, 480), (320, 120)), point),
                             uv * [0.5, 0.25])
  np.testing.assert_allclose(_project(cam.crop_intrinsics(K, 100, 40), point), uv - [100, 40])
  Kn = cam.normalize_intrinsics(K, 640, 480)
  np.testing.assert_allclose(_project(Kn, point), uv / [640, 480])
  np.testing.assert_allclose(cam.denormalize_intrinsics(Kn, 640, 480), K)

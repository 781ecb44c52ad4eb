"""Plücker rays against an independent unprojection of pixel centres."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

from realcam_jax import camera as cam


def _camera(seed=0):
  rng = np.random.default_rng(seed)
  c2w = cam.make_pose(Rotation.random(random_state=seed).as_matrix(), rng.normal(size=3) * 2)
  K = cam.intrinsics_from_focal(40.0, 44.0, 17.0, 11.0)
  return c2w, K


def test_rays_are_the_lines_through_unprojected_pixel_centres():
  c2w, K = _camera()
  H, W = 20, 30
  rays = cam.plucker_rays(c2w, K, H, W)
  assert rays.shape == (H, W, 6)
  K_inv = np.linalg.inv(K)
  for i, j in [(0, 0), (7, 13), (19, 29), (10, 2)]:
    pixel = np.array([j + 0.5, i + 0.5, 1.0])
    x1 = c2w[:3, :3] @ (1.0 * (K_inv @ pixel)) + c2w[:3, 3]  # depth 1
    x2 = c2w[:3, :3] @ (2.0 * (K_inv @ pixel)) + c2w[:3, 3]  # depth 2
    d, m = rays[i, j, :3], rays[i, j, 3:]
    np.testing.assert_allclose(np.linalg.norm(d), 1.0, atol=1e-12)
    np.testing.assert_allclose(d, (x2 - x1) / np.linalg.norm(x2 - x1), atol=1e-12)
    # The moment is the same for every point on the line.
    np.testing.assert_allclose(np.cross(x1, d), m, atol=1e-12)
    np.testing.assert_allclose(np.cross(x2, d), m, atol=1e-12)
    # Depth is along the camera's z axis, as in OpenCV.
    np.testing.assert_allclose((x2 - c2w[:3, 3]) @ c2w[:3, 2], 2.0, atol=1e-12)


def test_stride_matches_a_downsampled_camera():
  c2w, K = _camera(1)
  coarse = cam.plucker_rays(c2w, K, 20, 30, stride=5)
  assert coarse.shape == (4, 6, 6)
  small = cam.plucker_rays(c2w, cam.scale_intrinsics(K, 1 / 5), 4, 6)
  np.testing.assert_allclose(coarse, small, atol=1e-12)


def test_batched_and_jax_match_numpy():
  poses = np.stack([_camera(s)[0] for s in range(3)])
  K = _camera()[1]
  ref = cam.plucker_rays(poses, K, 8, 12, stride=2)
  assert ref.shape == (3, 4, 6, 6)
  np.testing.assert_allclose(ref[1], cam.plucker_rays(poses[1], K, 8, 12, stride=2))
  fn = jax.jit(lambda p, k: cam.plucker_rays(p, k, 8, 12, stride=2))
  out = fn(jnp.asarray(poses, jnp.float32), jnp.asarray(K, jnp.float32))
  np.testing.assert_allclose(out, ref, atol=1e-5)


def test_patchify_rays_layout():
  c2w, K = _camera(2)
  rays = cam.plucker_rays(c2w, K, 8, 12)
  patches = cam.patchify_rays(rays, 4)
  assert patches.shape == (2, 3, 96)
  # Token (1, 2) holds pixel (4 + p, 8 + q) at channels (p * 4 + q) * 6 + c.
  np.testing.assert_array_equal(patches[1, 2].reshape(4, 4, 6), rays[4:8, 8:12])

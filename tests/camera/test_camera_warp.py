"""camera/warp.py against views of a textured plane ray-traced here in world coordinates."""

import numpy as np
import pytest

from realcam_jax.camera import warp
from realcam_jax.camera.intrinsics import intrinsics_from_fov
from realcam_jax.camera.pose import invert_pose, make_pose, rotation_x, rotation_y

H, W = 48, 64


def _texture(px, py):
  """A smooth RGB texture of plane coordinates (metres)."""
  return np.stack([np.sin(1.3 * px) * np.cos(0.9 * py), np.cos(0.7 * px + 0.4 * py),
                   np.sin(0.5 * px - 1.1 * py)], -1)


def _render_plane(c2w, K, plane_z):
  """The view of the world plane z = plane_z (textured by x, y) from camera c2w: [H, W, 3]."""
  u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
  rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T
  dirs = rays @ c2w[:3, :3].T
  eye = c2w[:3, 3]
  lam = (plane_z - eye[2]) / dirs[..., 2]
  pts = eye + lam[..., None] * dirs
  return _texture(pts[..., 0], pts[..., 1])


@pytest.fixture
def K():
  return np.asarray(intrinsics_from_fov(60.0, W, H), np.float64)


def test_identity_camera_returns_the_source(K):
  rng = np.random.default_rng(0)
  frames = rng.uniform(0, 255, (3, H, W, 3)).astype(np.float32)
  out, valid = warp.plane_warp(frames, np.tile(np.eye(4), (3, 1, 1)), K, 5.0)
  np.testing.assert_allclose(np.asarray(out), frames, atol=1e-2)   # float32 K^-1 K
  assert np.asarray(valid).all()


@pytest.mark.parametrize("name, target", [
    ("pan", lambda: make_pose(rotation_y(np.deg2rad(8.0)), np.zeros(3))),
    ("tilt", lambda: make_pose(rotation_x(np.deg2rad(-6.0)), np.zeros(3))),
    ("translate", lambda: make_pose(np.eye(3), np.array([0.4, -0.2, 0.5]))),
    ("arc", lambda: make_pose(rotation_y(np.deg2rad(-10.0)), np.array([0.7, 0.0, 0.1]))),
])
def test_warp_of_a_plane_view_is_the_target_view(K, name, target):
  """Source camera at the world origin looking down +z at the plane z = 4; the warp of
  its view through depth 4 must be the target camera's own view of the plane."""
  source_c2w, target_c2w = np.eye(4), target()
  src = _render_plane(source_c2w, K, 4.0)
  truth = _render_plane(target_c2w, K, 4.0)
  rel = (invert_pose(source_c2w) @ target_c2w)[None]
  out, valid = warp.plane_warp(src[None], rel, K, 4.0)
  out, valid = np.asarray(out)[0], np.asarray(valid)[0]
  assert valid.mean() > 0.6, name
  err = np.abs(out - truth)[valid]
  assert err.max() < 0.05, (name, err.max())      # bilinear error on a smooth texture
  # the source itself is far from the truth: the warp did the work
  assert np.abs(src - truth)[valid].mean() > 5 * err.mean(), name


def test_a_rotation_warp_does_not_depend_on_the_depth(K):
  rel = make_pose(rotation_y(np.deg2rad(12.0)) @ rotation_x(np.deg2rad(4.0)), np.zeros(3))[None]
  near = warp.plane_sample_coords(rel, K, H, W, 1.5)
  far = warp.plane_sample_coords(rel, K, H, W, 40.0)
  for a, b in zip(near, far):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-3)


def test_pixels_outside_the_source_are_invalid(K):
  rel = make_pose(rotation_y(np.deg2rad(20.0)), np.zeros(3))[None]   # pan right
  _, _, valid = warp.plane_sample_coords(rel, K, H, W, 4.0)
  valid = np.asarray(valid)[0]
  assert valid[:, 0].all() and not valid[:, -1].any()   # the right edge sees new ground


def test_bad_inputs_are_named(K):
  with pytest.raises(ValueError, match="depth"):
    warp.plane_sample_coords(np.eye(4)[None], K, H, W, 0.0)
  with pytest.raises(ValueError, match="rel has shape"):
    warp.plane_warp(np.zeros((2, H, W, 3)), np.eye(4)[None], K, 4.0)

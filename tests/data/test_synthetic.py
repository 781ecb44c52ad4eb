"""The synthetic world: determinism, geometry, motion, static masks, true loops, bad input."""

import numpy as np
import pytest

from realcam_jax.camera.plucker import pixel_centers
from realcam_jax.camera.pose import look_at
from realcam_jax.data import synthetic
from realcam_jax.data.rig import RigError
from realcam_jax.data.scene import object_state

H = W = 16


def _unproject(depth, K, c2w):
  """World points f64[H, W, 3] of every pixel (inf depth -> nan)."""
  h, w = depth.shape
  rays = pixel_centers(h, w) @ np.linalg.inv(K).T          # camera z = 1
  with np.errstate(invalid="ignore"):
    pc = rays * depth[..., None]
    return pc @ c2w[:3, :3].T + c2w[:3, 3]


def _surface_distance(scene, points, time):
  """|signed distance| from points [N, 3] to the nearest surface (ground or object)."""
  best = np.abs(points[:, 2])
  for kind, g in enumerate((scene.spheres, scene.boxes, scene.cylinders)):
    center, yaw = (np.asarray(a) for a in object_state(g, time))
    for i in np.flatnonzero(np.asarray(g.active)):
      p = points - center[i]
      c, s = np.cos(yaw[i]), np.sin(yaw[i])
      p = np.stack([c * p[:, 0] + s * p[:, 1], -s * p[:, 0] + c * p[:, 1], p[:, 2]], -1)
      size = np.asarray(g.size[i])
      if kind == 0:
        d = np.linalg.norm(p, axis=-1) - size[0]
      elif kind == 1:
        q = np.abs(p) - size
        d = np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)
      else:
        d = np.maximum(np.linalg.norm(p[:, :2], axis=-1) - size[0], np.abs(p[:, 2]) - size[2])
      best = np.minimum(best, np.abs(d))
  return best


def test_clips_are_deterministic_per_seed():
  a = synthetic.sample_clip(5, 9, H, W, 2)
  b = synthetic.sample_clip(5, 9, H, W, 2)
  c = synthetic.sample_clip(6, 9, H, W, 2)
  for key in ("source_rgb", "target_rgb", "source_c2w", "target_c2w", "intrinsics",
              "source_depth", "source_static_mask", "view_change"):
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  assert a["target_trajectories"] == b["target_trajectories"]
  assert not np.array_equal(a["source_rgb"], c["source_rgb"])
  assert a["source_rgb"].shape == (9, H, W, 3) and a["source_rgb"].dtype == np.uint8
  assert a["target_rgb"].shape == (2, 9, H, W, 3)
  assert a["target_c2w"].shape == (2, 9, 4, 4) and a["target_depth"].shape == (2, 9, H, W)


def test_depth_unprojects_onto_scene_surfaces():
  clip = synthetic.sample_clip(11, 9, H, W, 1)
  scene = synthetic.make_scene(11)
  for k in (0, 8):
    for c2w, depth in ((clip["source_c2w"][k], clip["source_depth"][k]),
                       (clip["target_c2w"][0, k], clip["target_depth"][0, k])):
      hit = np.isfinite(depth)
      assert hit.mean() > 0.3
      pts = _unproject(depth, clip["intrinsics"], c2w)[hit]
      dist = _surface_distance(scene, pts, clip["times"][k])
      assert np.all(dist < 1e-3 * np.maximum(depth[hit], 1.0)), dist.max()
      assert np.all(pts[:, 2] > -1e-3)  # nothing under the ground


def test_a_surface_point_has_the_same_colour_from_both_cameras():
  """Exact: pixel depth of camera A -> world point -> ray from camera B's centre."""
  clip = synthetic.sample_clip(3, 9, H, W, 1)
  scene = synthetic.make_scene(3)
  checked = 0
  for k in (0, 4, 8):
    a, b, time = clip["source_c2w"][k], clip["target_c2w"][0, k], clip["times"][k]
    depth = clip["source_depth"][k]
    hit = np.isfinite(depth).reshape(-1)
    pts = _unproject(depth, clip["intrinsics"], a).reshape(-1, 3)
    pts = np.where(hit[:, None], pts, 0.0).astype(np.float32)  # fixed ray count: one compile
    from_a = synthetic.trace(scene, np.broadcast_to(a[:3, 3], pts.shape), pts - a[:3, 3], time)
    from_b = synthetic.trace(scene, np.broadcast_to(b[:3, 3], pts.shape), pts - b[:3, 3], time)
    from_a, from_b = ({k: np.asarray(v)[hit] for k, v in r.items()} for r in (from_a, from_b))
    np.testing.assert_allclose(from_a["t"], 1.0, atol=1e-4)
    visible = np.abs(from_b["t"] - 1.0) < 1e-3      # not occluded in B
    assert visible.mean() > 0.5
    diff = np.abs(from_a["rgb"] - from_b["rgb"])[visible]
    assert diff.max() < 2e-3, diff.max()
    checked += visible.sum()
  assert checked > 200


def test_rendered_views_agree_after_reprojection():
  """Through `render` (pixel centres, intrinsics): nearest-pixel reprojection A -> B."""
  h = w = 32
  clip = synthetic.sample_clip(4, 3, h, w, 1)
  K, errors = clip["intrinsics"], []
  for k in range(3):
    a, b = clip["source_c2w"][k], clip["target_c2w"][0, k]
    depth = clip["source_depth"][k]
    pts = _unproject(depth, K, a)
    xb = (pts - b[:3, 3]) @ b[:3, :3]
    with np.errstate(invalid="ignore", divide="ignore"):
      uv = (xb @ K.T)[..., :2] / xb[..., 2:]
    ok = np.isfinite(depth) & (xb[..., 2] > 0) & np.all((uv >= 0) & (uv < [w, h]), -1)
    j, i = np.floor(uv[ok]).astype(int).T
    depth_b = clip["target_depth"][0, k][i, j]
    same = np.abs(depth_b - xb[ok][:, 2]) < 0.01 * depth_b
    err = np.abs(clip["source_rgb"][k][ok].astype(int) - clip["target_rgb"][0, k][i, j])
    errors.append(err.max(-1)[same])
  errors = np.concatenate(errors)
  assert len(errors) > 100
  assert np.median(errors) <= 3 and np.percentile(errors, 90) <= 16, np.percentile(errors, 90)


def _fixed_camera_frames(seed, times, **scene):
  world = synthetic.make_scene(seed, **scene)
  c2w = look_at(np.array([7.0, -3.0, 3.0]), np.array([0.0, 0.0, 0.6]), np.array([0.0, 0, 1]))
  K = np.array([[W * 0.8, 0, W / 2], [0, W * 0.8, H / 2], [0, 0, 1]])
  n = len(times)
  return world, synthetic.render(world, np.repeat(c2w[None], n, 0), K, np.asarray(times), H, W)


def test_moving_objects_move_and_static_mask_marks_them():
  world, out = _fixed_camera_frames(2, [0.0, 1.5], moving_fraction=1.0)
  for g in (world.spheres, world.boxes, world.cylinders):
    active = np.asarray(g.active)
    c0, c1 = np.asarray(object_state(g, 0.0)[0]), np.asarray(object_state(g, 1.5)[0])
    assert np.all(np.linalg.norm(c1 - c0, axis=-1)[active] > 0.05)
  rgb, static = out["rgb"].astype(int), out["static_mask"]
  changed = np.abs(rgb[0] - rgb[1]).max(-1) > 0
  assert changed.sum() > 3 and (~static).sum() > 3
  both = static[0] & static[1]
  np.testing.assert_array_equal(rgb[0][both], rgb[1][both])   # static => unchanged
  assert not np.any(changed & both)


def test_static_scene_is_all_static():
  _, out = _fixed_camera_frames(2, [0.0, 1.5], moving_fraction=0.0)
  assert out["static_mask"].all()
  np.testing.assert_array_equal(out["rgb"][0], out["rgb"][1])


@pytest.mark.parametrize("trajectory", ["out_and_back", "circle"])
def test_true_loop_returns_to_its_start(trajectory):
  loop = synthetic.render_true_loop(8, 9, H, W, trajectory=trajectory,
                                    scene=dict(moving_fraction=1.0))
  np.testing.assert_array_equal(loop["c2w"][0], loop["c2w"][-1])
  assert not np.allclose(loop["c2w"][0], loop["c2w"][4], atol=1e-3)   # it did go somewhere
  assert np.all(np.diff(loop["times"]) > 0)                           # time runs forward
  both = loop["static_mask"][0] & loop["static_mask"][-1]
  assert both.mean() > 0.5
  np.testing.assert_array_equal(loop["rgb"][0][both], loop["rgb"][-1][both])
  assert np.any(loop["rgb"][0] != loop["rgb"][-1])   # moving objects went on moving


def test_true_loop_from_the_target_camera_starts_at_the_clips_target_view():
  clip = synthetic.sample_clip(5, 9, H, W, 2)
  loop = synthetic.render_true_loop(5, 9, H, W, start="target", num_target_cameras=2)
  np.testing.assert_allclose(loop["c2w"][0], clip["target_c2w"][0, 0], atol=1e-6)
  np.testing.assert_array_equal(loop["rgb"][0], clip["target_rgb"][0, 0])
  np.testing.assert_array_equal(loop["c2w"][0], loop["c2w"][-1])
  with pytest.raises(ValueError, match="start='sideways'"):
    synthetic.render_true_loop(5, 9, H, W, start="sideways")


def test_true_loop_rejects_open_paths():
  with pytest.raises(ValueError, match="does not return to its start"):
    synthetic.render_true_loop(1, 5, H, W, trajectory="pan_left", degrees=20.0)


def test_rig_views_differ_and_see_the_scene():
  clip = synthetic.sample_clip(9, 9, H, W, 2)
  assert np.all(clip["view_change"][:, 0] > 5.0)           # different viewpoints at frame 0
  for c2w in np.concatenate([clip["source_c2w"][None], clip["target_c2w"]]):
    assert np.all(c2w[:, 2, 3] > 0.3)                       # above the ground
    centre = (np.linalg.inv(c2w[0]) @ np.array([0.0, 0.0, 0.5, 1.0]))[:3]
    assert centre[2] > 0                                    # scene centre in front
    u, v = (clip["intrinsics"] @ centre)[:2] / centre[2]
    assert -0.5 * W < u < 1.5 * W and -0.5 * H < v < 1.5 * H


@pytest.mark.parametrize("kwargs, match", [
    (dict(height=0), "height=0"),
    (dict(num_frames=0), "num_frames=0"),
    (dict(num_target_cameras=-1), "num_target_cameras"),
    (dict(rig=dict(target_trajectories=("warp_drive",))), "unknown trajectory family 'warp_drive'"),
    (dict(rig=dict(fov=60)), "unknown rig config fields"),
    (dict(scene=dict(num_spheres=(3, 1))), "num_spheres"),
    (dict(fps=0), "fps"),
])
def test_bad_clip_config_raises_clear_errors(kwargs, match):
  args = dict(seed=0, num_frames=3, height=H, width=W, num_target_cameras=1)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    synthetic.sample_clip(**args)


def test_bad_render_input_raises_clear_errors():
  world = synthetic.make_scene(0)
  K = np.eye(3) * 10
  with pytest.raises(ValueError, match=r"c2w has shape \(3, 4\)"):
    synthetic.render(world, np.eye(4)[:3], K, [0.0], H, W)
  with pytest.raises(ValueError, match="NaN"):
    synthetic.render(world, np.full((1, 4, 4), np.nan), K, [0.0], H, W)
  with pytest.raises(ValueError, match="width=0"):
    synthetic.render(world, np.eye(4)[None], K, [0.0], H, 0)
  with pytest.raises(RigError):
    synthetic.sample_clip(0, 3, H, W, rig=dict(distance=(5.0, 1.0)))

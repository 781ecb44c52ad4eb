"""The synthetic multi-camera world: clips of one dynamic scene from several cameras.

    clip = sample_clip(seed=7, num_frames=33, height=64, width=64, num_target_cameras=1)
    clip["source_rgb"]   # u8[T, H, W, 3]
    clip["target_rgb"]   # u8[C, T, H, W, 3]

Pieces (each usable alone):
  scene.py   `make_scene(seed, **scene_cfg) -> Scene`: ground, sky, primitives,
             some moving (deterministic per seed).
  render.py  `render(scene, c2w[N,4,4], K, times[N], height, width)` ->
             rgb u8, z-depth f32 (inf = sky), static_mask bool; `trace` for rays.
  rig.py     `sample_rig(scene, seed, T, W, H, C, **rig_cfg)`: source and
             target cameras (world poses, intrinsics, trajectory names).

Conventions: camera-to-world 4x4, OpenCV camera axes, metres; the world is
z up with the ground at z = 0. Poses returned here are *world* poses; the data
pipeline re-expresses them relative to the source camera's first frame.
Scene time of frame k is `k / fps` seconds.
"""

from __future__ import annotations

import numpy as np

from realcam_jax.camera import presets
from realcam_jax.data.render import render, trace  # noqa: F401  (public API)
from realcam_jax.data import rig as rig_lib
from realcam_jax.data.rig import DEFAULT_RIG, RigError, sample_rig  # noqa: F401
from realcam_jax.data.scene import DEFAULT_SCENE, Scene, make_scene  # noqa: F401


def _check_clip_args(num_frames, height, width, num_target_cameras, fps):
  for name, v, lo in (("num_frames", num_frames, 1), ("height", height, 1),
                      ("width", width, 1), ("num_target_cameras", num_target_cameras, 0)):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
      raise ValueError(f"synthetic clip: {name}={v!r}; expected an int >= {lo}")
  if not (isinstance(fps, (int, float)) and fps > 0):
    raise ValueError(f"synthetic clip: fps={fps!r}; expected a positive number")


def sample_clip(seed: int, num_frames: int, height: int, width: int,
                num_target_cameras: int = 1, *, fps: float = 15.0, scene: dict | None = None,
                rig: dict | None = None, frames_per_chunk: int = 8) -> dict:
  """Renders one synchronised multi-camera clip of a random dynamic scene.

  Args:
    seed: non-negative int; the same arguments give bit-identical clips.
    num_frames: T >= 1 frames per camera.
    height, width: image size in pixels.
    num_target_cameras: C >= 0 target cameras besides the source camera.
    fps: frames per second of scene time.
    scene: overrides of `scene.DEFAULT_SCENE`.
    rig: overrides of `rig.DEFAULT_RIG`.
    frames_per_chunk: renderer batch (memory vs speed).

  Returns:
    dict with numpy arrays
      source_rgb u8[T,H,W,3], target_rgb u8[C,T,H,W,3],
      source_c2w f32[T,4,4], target_c2w f32[C,T,4,4] (world),
      intrinsics f32[3,3] (shared by all cameras),
      source_depth f32[T,H,W], target_depth f32[C,T,H,W] (z-depth, inf = sky),
      source_static_mask bool[T,H,W], target_static_mask bool[C,T,H,W],
      times f32[T], view_change f32[C,2] (deg, m at frame 0),
    and seed int, source_trajectory str, target_trajectories list[str],
    target_details list[str] (see `rig.sample_rig`).
  """
  _check_clip_args(num_frames, height, width, num_target_cameras, fps)
  world = make_scene(seed, **(scene or {}))
  cams = sample_rig(world, seed, num_frames, width, height, num_target_cameras, **(rig or {}))
  c = num_target_cameras
  poses = np.concatenate([cams["source_c2w"][None], cams["target_c2w"]]).astype(np.float32)
  times = (np.arange(num_frames) / fps).astype(np.float32)
  out = render(world, poses.reshape(-1, 4, 4), cams["intrinsics"], np.tile(times, c + 1),
               height, width, frames_per_chunk=frames_per_chunk)
  shaped = {k: v.reshape((c + 1, num_frames) + v.shape[1:]) for k, v in out.items()}
  return dict(
      source_rgb=shaped["rgb"][0], target_rgb=shaped["rgb"][1:],
      source_c2w=poses[0], target_c2w=poses[1:],
      intrinsics=cams["intrinsics"].astype(np.float32),
      source_depth=shaped["depth"][0], target_depth=shaped["depth"][1:],
      source_static_mask=shaped["static_mask"][0], target_static_mask=shaped["static_mask"][1:],
      times=times, view_change=cams["view_change"].astype(np.float32), seed=int(seed),
      source_trajectory=cams["source_trajectory"],
      target_trajectories=list(cams["target_trajectories"]),
      target_details=list(cams["target_details"]))


def render_true_loop(seed: int, num_frames: int, height: int, width: int, *,
                     trajectory: str = "out_and_back", fps: float = 15.0,
                     scene: dict | None = None, rig: dict | None = None,
                     frames_per_chunk: int = 8, start: str = "source",
                     num_target_cameras: int = 1, **trajectory_params) -> dict:
  """Renders a *true* loop: the camera returns exactly to its start while scene time runs on.

  The camera starts at the clip's source camera base pose (`start="source"`) or at
  target camera 0's first pose of `sample_clip(seed, num_frames, height, width,
  num_target_cameras, ...)` (`start="target"`, so the loop's first frame is a novel
  view of the source clip), same scene and placement, and follows a closed
  trajectory; frame k has scene time k / fps, so moving objects keep moving while
  static regions at the same pose must look the same (loop-closure ground truth).

  Args:
    seed, num_frames, height, width, fps, scene, rig, frames_per_chunk,
      num_target_cameras: as in `sample_clip` (num_frames >= 2; num_target_cameras
      only matters with start="target").
    start: "source" or "target" (see above).
    trajectory: a closed preset, e.g. "out_and_back" (default params: a
      random open path out and back) or "circle".
    **trajectory_params: preset parameters (see
      `realcam_jax.camera.describe_trajectory`); defaults are drawn per seed.

  Returns:
    dict(rgb u8[T,H,W,3], depth f32[T,H,W], static_mask bool[T,H,W],
    c2w f32[T,4,4] (world; c2w[-1] == c2w[0] exactly), intrinsics f32[3,3],
    times f32[T], trajectory str, trajectory_params dict, seed int).

  Raises:
    ValueError: bad sizes, or a trajectory that does not return to its start.
  """
  _check_clip_args(num_frames, height, width, num_target_cameras, fps)
  if num_frames < 2:
    raise ValueError(f"render_true_loop: num_frames={num_frames}; a loop needs >= 2 frames")
  world = make_scene(seed, **(scene or {}))
  if start == "source":
    cams = sample_rig(world, seed, 1, width, height, 0, **(rig or {}))
    base = cams["source_c2w"][0]
  elif start == "target":
    if num_target_cameras < 1:
      raise ValueError(f"render_true_loop: start='target' needs num_target_cameras >= 1, "
                       f"got {num_target_cameras}")
    cams = sample_rig(world, seed, num_frames, width, height, num_target_cameras, **(rig or {}))
    base = cams["target_c2w"][0, 0]
  else:
    raise ValueError(f"render_true_loop: start={start!r}; expected 'source' or 'target'")
  if not trajectory_params:
    rng = np.random.default_rng([int(seed), 0x100B])
    trajectory_params = rig_lib.trajectory_params(trajectory, rng, cams["source_distance"], 1.5)
  rel = presets.get_trajectory(trajectory, num_frames, **trajectory_params)
  gap = float(np.abs(rel[-1] - rel[0]).max())
  if gap > 1e-5:
    raise ValueError(f"render_true_loop: trajectory {trajectory!r} with {trajectory_params} "
                     f"does not return to its start (last pose differs by {gap:.3g}); "
                     "expected a closed path such as 'out_and_back' or 'circle'")
  rel[-1] = rel[0]
  c2w = (base @ rel).astype(np.float32)
  c2w[-1] = c2w[0]
  times = (np.arange(num_frames) / fps).astype(np.float32)
  out = render(world, c2w, cams["intrinsics"], times, height, width,
               frames_per_chunk=frames_per_chunk)
  return dict(**out, c2w=c2w, intrinsics=cams["intrinsics"].astype(np.float32), times=times,
              trajectory=trajectory, trajectory_params=dict(trajectory_params), seed=int(seed))

"""Held-out synthetic scenes with the ground-truth video of a chosen target camera path.

    view = heldout_view(0, num_frames=33, height=64, width=64, trajectory="arc_left")
    view["source_rgb"]    # u8[T, H, W, 3]   what the model sees
    view["target_poses"]  # f32[T, 4, 4]     target c2w relative to the source's first frame
    view["target_rgb"]    # u8[T, H, W, 3]   the scene rendered from those poses (ground truth)

Scene `index` i of a split is the clip `sample_clip(SPLIT_SEED_BASE[split] + i, ...)`
that `realcam data build` writes as example i of that split (default scene and rig
settings, `seed_offset` 0), so the test split is never seen in training.

Target path (`trajectory`):
  "clip"     the clip's own target camera (drawn by the rig exactly as in the dataset);
             the ground truth is the clip's `target_rgb`.
  a preset   `realcam camera list`, run by a `CameraController` over the whole clip from
             a start pose: `start="target"` (default) the clip's target camera at frame 0
             (a 15-75 deg viewpoint change from the source, as in training), or
             `start="source"` the source camera's first pose. The ground truth is
             rendered from the same scene at the same scene times.

Note: `"static"` with `start="source"` holds the target at the source camera's *first*
pose. The source camera moves in most clips, so that truth equals the source video only
at frame 0 (and for a static source). The case whose truth is exactly the source video,
the target following the source camera, is `realcam eval --cases identity`
(`realcam_jax/eval/cases.py`).
"""

from __future__ import annotations

import numpy as np

from realcam_jax.camera.pose import relative_to
from realcam_jax.data import synthetic

STARTS = ("target", "source")
CLIP_TRAJECTORY = "clip"


def split_seed(index: int, split: str = "test") -> int:
  """Seed of example `index` of a dataset split (`tfds_builder.SPLIT_SEED_BASE`)."""
  from realcam_jax.data.tfds_builder import SPLIT_SEED_BASE
  if split not in SPLIT_SEED_BASE:
    raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_SEED_BASE)}")
  if not isinstance(index, (int, np.integer)) or index < 0:
    raise ValueError(f"scene index must be an int >= 0, got {index!r}")
  return int(SPLIT_SEED_BASE[split] + index)


def preset_path(trajectory: str, num_frames: int, start_pose) -> np.ndarray:
  """f64[T, 4, 4] poses of a preset run over `num_frames` frames from `start_pose`.

  Uses the same `CameraController` rules as `realcam render` / `serve`, so the poses
  are the ones a streaming session asks for. Raises `CameraCommandError` for unknown
  presets.
  """
  from realcam_jax.inference.camera_control import CameraController
  controller = CameraController(num_frames_hint=num_frames, initial_pose=start_pose)
  controller.set_trajectory(trajectory)
  return controller.poses_for(0, num_frames)


def heldout_view(index: int, num_frames: int, height: int, width: int,
                 trajectory: str = CLIP_TRAJECTORY, *, start: str = "target",
                 split: str = "test", fps: float = 15.0) -> dict:
  """A held-out clip, a target camera path and the ground-truth video along it.

  Args:
    index: scene index within `split` (>= 0).
    num_frames, height, width, fps: clip size (as `sample_clip`).
    trajectory: "clip" or a preset name (see the module docstring).
    start: start pose of a preset: "target" or "source".
    split: dataset split whose seed range is used ("test" by default).

  Returns:
    dict with source_rgb u8[T, H, W, 3], target_rgb u8[T, H, W, 3] (ground truth),
    target_poses f32[T, 4, 4] (relative to the source camera's first frame),
    source_poses f32[T, 4, 4] (same frame), intrinsics f32[3, 3], seed int,
    trajectory str (the rig's name for "clip"), start str.
  """
  if start not in STARTS:
    raise ValueError(f"unknown start pose {start!r}; expected one of {STARTS}")
  seed = split_seed(index, split)
  clip = synthetic.sample_clip(seed, num_frames, height, width, num_target_cameras=1, fps=fps)
  ref = clip["source_c2w"][0].astype(np.float64)
  source_rel = relative_to(clip["source_c2w"].astype(np.float64), ref)
  clip_rel = relative_to(clip["target_c2w"][0].astype(np.float64), ref)
  if trajectory == CLIP_TRAJECTORY:
    rel, gt, name = clip_rel, clip["target_rgb"][0], clip["target_trajectories"][0]
  else:
    rel = preset_path(trajectory, num_frames, clip_rel[0] if start == "target" else np.eye(4))
    world = synthetic.make_scene(seed)
    gt = synthetic.render(world, (ref @ rel).astype(np.float32), clip["intrinsics"],
                          clip["times"], height, width)["rgb"]
    name = trajectory
  return dict(source_rgb=np.ascontiguousarray(clip["source_rgb"]),
              target_rgb=np.ascontiguousarray(gt), target_poses=rel.astype(np.float32),
              source_poses=source_rel.astype(np.float32), intrinsics=clip["intrinsics"],
              seed=seed, trajectory=name, start=start if trajectory != CLIP_TRAJECTORY else
              "clip")

"""Target cameras that start at the source camera and move away (issue 19).

Every interactive stream and every ReCamMaster preset starts with the target camera
at the source camera, so the training mix needs such pairs beside the far-apart ones
(`rig.sample_rig`, `near_fraction`). A near-source camera starts at the source's first
pose, or within a small jitter of it, and follows one family of `rig.NEAR_PATHS` with
magnitudes drawn from `rig.NEAR_RANGES` (ReCamMaster's MultiCamVideo ranges), at
constant speed or eased (`eased_progress`), in the source camera's level frame:

  c2w[t] = level @ jitter @ path(progress[t]) @ pitch       (path(0) = identity)

"follow_source" is the source camera's own path (the identity case: the truth is the
source video).
"""

from __future__ import annotations

import numpy as np

from realcam_jax.camera import presets
from realcam_jax.camera.pose import make_pose, rotation_x, rotation_y

_DIRECTIONS = ("left", "right", "up", "down", "forward", "back")


def eased_progress(s, rate: float) -> np.ndarray:
  """MultiCamVideo's eased speed: `(1 - exp(-a s)) / (1 - exp(-a))` for s in [0, 1].

  Fast start, slow end; `rate` a > 0 (a -> 0 is constant speed). f64[T] like `s`.
  """
  s = np.asarray(s, np.float64)
  if rate <= 0:
    raise ValueError(f"eased_progress: rate must be > 0, got {rate}")
  return (1.0 - np.exp(-rate * s)) / (1.0 - np.exp(-rate))


def _uniform(rng, lo_hi, sign: bool = False) -> float:
  v = float(rng.uniform(*lo_hi))
  return v * float(rng.choice([-1.0, 1.0])) if sign else v


def _path(name: str, s: np.ndarray, rng, distance: float, ranges: dict) -> tuple[np.ndarray, str]:
  """(relative poses f64[T, 4, 4] at progress s, a label) of one family in the level frame."""
  if name == "static":
    return presets.evaluate_trajectory("static", s), "static"
  if name == "pan":
    deg = _uniform(rng, ranges["pan_deg"], sign=True)
    return make_pose(rotation_y(np.deg2rad(deg) * s), np.zeros(3)), f"pan {deg:+.0f}deg"
  if name == "tilt":
    deg = _uniform(rng, ranges["tilt_deg"], sign=True)
    return make_pose(rotation_x(np.deg2rad(deg) * s), np.zeros(3)), f"tilt {deg:+.0f}deg"
  if name == "arc":
    deg = _uniform(rng, ranges["arc_deg"], sign=True)
    return (presets.evaluate_trajectory("orbit", s, degrees=deg, radius=distance),
            f"arc {deg:+.0f}deg")
  if name == "translate":
    direction = str(rng.choice(_DIRECTIONS))
    reach = _uniform(rng, ranges["translate"]) * distance
    if direction == "forward":          # stay in front of the subject
      reach = min(reach, 0.6 * distance)
    look = direction in ("left", "right", "up", "down") and rng.random() < 0.5
    label = f"translate {direction} {reach:.2f}m" + (" looking at the subject" if look else "")
    if look and direction in ("up", "down"):
      return presets.evaluate_trajectory(f"translate_{direction}", s, distance=reach,
                                         target_distance=distance), label
    if look:
      return presets.evaluate_trajectory(f"arc_{direction}", s, distance=reach, angle_deg=0.0,
                                         target_distance=distance), label
    axis = dict(left=(-1, 0, 0), right=(1, 0, 0), up=(0, -1, 0), down=(0, 1, 0),
                forward=(0, 0, 1), back=(0, 0, -1))[direction]
    return presets.evaluate_trajectory("dolly", s, distance=reach, direction=axis,
                                       ease=False), label
  if name == "random_polyline":
    lo, hi = ranges["polyline_points"]
    points = int(rng.integers(int(lo), int(hi) + 1))
    step = _uniform(rng, ranges["polyline_step"]) * distance
    return presets.evaluate_trajectory(
        "random_polyline", s, seed=int(rng.integers(2**31)), num_points=points + 1, step=step,
        target_distance=distance), f"random_polyline {points} points"
  raise ValueError(f"unknown near-source family {name!r}")


def _jitter(rng, max_deg: float, max_m: float) -> np.ndarray:
  """A small start offset: half the time none, else up to max_deg of yaw/pitch and max_m."""
  if rng.random() < 0.5 or (max_deg == 0 and max_m == 0):
    return np.eye(4)
  yaw, pitch = np.deg2rad(rng.uniform(-max_deg, max_deg, 2))
  shift = rng.uniform(-1.0, 1.0, 3)
  shift *= max_m * rng.uniform() / max(np.linalg.norm(shift), 1e-9)
  return make_pose(rotation_y(yaw) @ rotation_x(pitch), shift)


def near_source_path(level, pitch, source_c2w, distance: float, rng, cfg: dict,
                     ranges: dict) -> tuple[np.ndarray, str, str]:
  """World poses f64[T, 4, 4] of one near-source target camera, its name, its label.

  The name is "near:<family>" (`rig.trajectory_names()`, what records store); the label
  adds the drawn magnitude and speed profile.

  Args:
    level, pitch: f64[4, 4] the source camera's level frame and pitch at frame 0
      (`source_c2w[0] = level @ pitch`).
    source_c2w: f64[T, 4, 4] the source camera's world path.
    distance: horizontal distance from the source camera to its subject (m).
    rng: numpy Generator (the rig's stream).
    cfg: validated rig config (near_trajectories, near_start_jitter).
    ranges: magnitude ranges (`rig.NEAR_RANGES`).
  """
  num_frames = len(source_c2w)
  name = str(rng.choice(cfg["near_trajectories"]))
  if name == "follow_source":
    return (np.asarray(source_c2w, np.float64).copy(), "near:follow_source",
            "near:follow_source")
  s = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
  eased = rng.random() < 0.5
  if eased:
    s = eased_progress(s, float(rng.uniform(*ranges["ease_rate"])))
  rel, label = _path(name, s, rng, distance, ranges)
  rel = np.linalg.inv(rel[0]) @ rel      # exactly the identity at frame 0
  start = _jitter(rng, *cfg["near_start_jitter"])
  speed = "eased" if eased else "constant"
  return level @ start @ rel @ pitch, f"near:{name}", f"near:{label}, {speed} speed"

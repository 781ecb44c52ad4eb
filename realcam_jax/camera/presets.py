"""Named camera trajectories, relative to the first frame (which is the identity).

Every preset is a function of progress `s` in [0, 1] (frame k of T has
`s = k / (T - 1)`), so it can be sampled at any frame count. Axes are ours:
x right, y down, z forward, metres.

ReCamMaster's ten test paths (`camera_extrinsics.json`, cam01..cam10) were
measured after conversion to our axes (see `docs/cameras.md`): the motion is
linear in frame index, 81 frames, and the last frame reaches 160/161 of a round
nominal value (their generator advances nominal/80.5 per frame), so a 20 deg
pan ends at 19.876 deg. Defaults reproduce those last-frame magnitudes for any
frame count; with 81 frames each preset equals its camXX (relative to frame 0)
to ~1e-5. "translate" and "arc" paths look at a point 4 m ahead on the start
axis; the arcs move on a straight line 15 deg off the x axis towards it.
"""

from __future__ import annotations

import inspect
from typing import Callable

import numpy as np

from realcam_jax.camera.interp import interpolate_poses, smoothstep
from realcam_jax.camera.pose import look_at, make_pose, relative_to, rotation_x, rotation_y
from realcam_jax.camera.validate import CameraFileError

RECAM_REACH = 160.0 / 161.0  # fraction of the nominal motion reached at ReCamMaster's frame 80
RECAM_FRAMES = 81

_UP = np.array([0.0, -1.0, 0.0])
_REGISTRY: dict[str, tuple[Callable, str]] = {}


def _register(name, description):
  def deco(fn):
    _REGISTRY[name] = (fn, description)
    return fn
  return deco


def _identity(s):
  return np.broadcast_to(np.eye(4), s.shape + (4, 4)).copy()


def _translate(s, offset):
  return make_pose(np.eye(3), s[:, None] * np.asarray(offset, np.float64))


def _look_at_path(s, end, target_distance):
  eye = s[:, None] * np.asarray(end, np.float64)
  return look_at(eye, np.array([0.0, 0.0, target_distance]), _UP)


@_register("static", "camera does not move")
def _static(s):
  return _identity(s)


@_register("pan_right", "ReCamMaster cam01: rotate right about the camera's y axis (19.9 deg)")
def _pan_right(s, degrees=20.0 * RECAM_REACH):
  return make_pose(rotation_y(np.deg2rad(degrees) * s), np.zeros(3))


@_register("pan_left", "ReCamMaster cam02: rotate left about the camera's y axis (19.9 deg)")
def _pan_left(s, degrees=20.0 * RECAM_REACH):
  return _pan_right(s, -degrees)


@_register("tilt_up", "ReCamMaster cam03: rotate up about the camera's x axis (9.9 deg)")
def _tilt_up(s, degrees=10.0 * RECAM_REACH):
  return make_pose(rotation_x(np.deg2rad(degrees) * s), np.zeros(3))


@_register("tilt_down", "ReCamMaster cam04: rotate down about the camera's x axis (9.9 deg)")
def _tilt_down(s, degrees=10.0 * RECAM_REACH):
  return _tilt_up(s, -degrees)


@_register("zoom_in", "ReCamMaster cam05: move forward along +z (1.99 m)")
def _zoom_in(s, distance=2.0 * RECAM_REACH):
  return _translate(s, (0.0, 0.0, distance))


@_register("zoom_out", "ReCamMaster cam06: move backward along -z (1.99 m)")
def _zoom_out(s, distance=2.0 * RECAM_REACH):
  return _translate(s, (0.0, 0.0, -distance))


@_register("translate_up",
           "ReCamMaster cam07: rise 0.99 m (-y) while looking at a point 4 m ahead")
def _translate_up(s, distance=1.0 * RECAM_REACH, target_distance=4.0):
  return _look_at_path(s, (0.0, -distance, 0.0), target_distance)


@_register("translate_down",
           "ReCamMaster cam08: sink 0.99 m (+y) while looking at a point 4 m ahead")
def _translate_down(s, distance=1.0 * RECAM_REACH, target_distance=4.0):
  return _look_at_path(s, (0.0, distance, 0.0), target_distance)


@_register("arc_left",
           "ReCamMaster cam09: move 1.99 m left (and 0.53 m forward) around a point 4 m ahead")
def _arc_left(s, distance=2.0 * RECAM_REACH, angle_deg=15.0, target_distance=4.0):
  return _look_at_path(
      s, (-distance, 0.0, distance * np.tan(np.deg2rad(angle_deg))), target_distance)


@_register("arc_right",
           "ReCamMaster cam10: move 1.99 m right (and 0.53 m forward) around a point 4 m ahead")
def _arc_right(s, distance=2.0 * RECAM_REACH, angle_deg=15.0, target_distance=4.0):
  return _look_at_path(
      s, (distance, 0.0, distance * np.tan(np.deg2rad(angle_deg))), target_distance)


@_register("orbit",
           "circle a point `radius` m ahead by `degrees` (positive: to the right), looking at it")
def _orbit(s, degrees=90.0, radius=4.0, height=0.0):
  phi = np.deg2rad(degrees) * s
  centre = np.array([0.0, 0.0, radius])
  eye = np.stack([radius * np.sin(phi), -height * s, radius - radius * np.cos(phi)], axis=-1)
  return relative_to(look_at(eye, centre, _UP), look_at(np.zeros(3), centre, _UP))


@_register("dolly",
           "straight move of `distance` m along `direction` (camera axes), eased, no rotation")
def _dolly(s, distance=1.0, direction=(0.0, 0.0, 1.0), ease=True):
  d = np.asarray(direction, np.float64)
  if d.shape != (3,) or not np.linalg.norm(d) > 0:
    raise CameraFileError(f"dolly: direction must be a non-zero 3-vector, got {direction!r}")
  return _translate(smoothstep(s) if ease else s, distance * d / np.linalg.norm(d))


def _catmull_rom(points, u):
  """Uniform Catmull-Rom through `points [N, 3]` at `u` in [0, N-1]."""
  ext = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
  i = np.clip(np.floor(u).astype(int), 0, len(points) - 2)
  f = (u - i)[:, None]
  p0, p1, p2, p3 = ext[i], ext[i + 1], ext[i + 2], ext[i + 3]
  return 0.5 * (2 * p1 + (p2 - p0) * f + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f**2
                + (3 * p1 - p0 - 3 * p2 + p3) * f**3)


@_register("random_polyline",
           "seeded smooth random path through waypoints, looking near a point ahead; "
           "speed='constant' or 'variable'")
def _random_polyline(s, seed=0, num_points=4, step=0.8, speed="constant", target_distance=4.0,
                     look_jitter=0.5):
  if speed not in ("constant", "variable"):
    raise CameraFileError(f"random_polyline: speed must be 'constant' or 'variable', got {speed!r}")
  num_points = int(num_points)
  if num_points < 2:
    raise CameraFileError(f"random_polyline: num_points must be >= 2, got {num_points}")
  rng = np.random.default_rng(seed)
  # Waypoints: mostly horizontal random steps of length ~step; the heading turns
  # by at most 75 deg per segment, so the path wanders without doubling back.
  heading = rng.uniform(0, 2 * np.pi) + np.cumsum(
      np.concatenate([[0.0], rng.uniform(-1.3, 1.3, num_points - 2)]))
  dirs = np.stack([np.cos(heading), rng.uniform(-0.3, 0.3, num_points - 1), np.sin(heading)], -1)
  dirs *= (step * rng.uniform(0.6, 1.0, num_points - 1) / np.linalg.norm(dirs, axis=-1))[:, None]
  points = np.concatenate([np.zeros((1, 3)), np.cumsum(dirs, axis=0)])
  targets = np.array([0.0, 0.0, target_distance]) + np.concatenate(
      [np.zeros((1, 3)), rng.normal(0.0, look_jitter, (num_points - 1, 3))])
  # Dense curve, parameterised by arc length for constant speed.
  dense_u = np.linspace(0, num_points - 1, 64 * num_points)
  dense = _catmull_rom(points, dense_u)
  arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=-1))])
  if speed == "variable":
    # Random smooth speed profile in [0.35, 1.65] x mean: warp the progress.
    knots = rng.uniform(0.35, 1.65, 5)
    grid = np.linspace(0, 1, 257)
    vel = np.interp(grid, np.linspace(0, 1, 5), knots)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (vel[1:] + vel[:-1]))])
    s = np.interp(s, grid, cum / cum[-1])
  u = np.interp(s * arc[-1], arc, dense_u)
  eye = _catmull_rom(points, u)
  key_rot = look_at(points, targets, _UP)
  rot = interpolate_poses(key_rot, np.arange(num_points, dtype=np.float64), u)
  return make_pose(rot[:, :3, :3], eye)  # waypoint 0: origin looking at +z = identity


@_register("out_and_back", "any preset `base` played forward then backward (a closed loop)")
def _out_and_back(s, base="pan_right", **base_params):
  if base in ("out_and_back", "circle"):
    raise CameraFileError(f"out_and_back: base must be an open path, got {base!r}")
  fn = _lookup(base)
  return fn(1.0 - np.abs(1.0 - 2.0 * s), **base_params)


@_register("circle",
           "horizontal circle of `radius` m back to the start; heading 'fixed' or 'tangent'")
def _circle(s, radius=0.5, heading="fixed", degrees=360.0):
  if heading not in ("fixed", "tangent"):
    raise CameraFileError(f"circle: heading must be 'fixed' or 'tangent', got {heading!r}")
  phi = np.deg2rad(degrees) * s
  # Starts at the origin, centre `radius` to the right, first moves forward.
  eye = np.stack([radius - radius * np.cos(phi), np.zeros_like(phi), radius * np.sin(phi)], -1)
  rot = rotation_y(phi) if heading == "tangent" else np.eye(3)
  return make_pose(rot, eye)


def _lookup(name):
  if name not in _REGISTRY:
    raise CameraFileError(f"unknown camera trajectory {name!r}: expected one of "
                          f"{', '.join(list_trajectories())}")
  return _REGISTRY[name][0]


def list_trajectories() -> list[str]:
  """Names of all presets, ReCamMaster's ten first."""
  return list(_REGISTRY)


def describe_trajectory(name: str) -> str:
  """One-line description of a preset (with its default parameters)."""
  fn = _lookup(name)
  params = [f"{p.name}={p.default!r}" if not isinstance(p.default, float)
            else f"{p.name}={p.default:.4g}"
            for p in list(inspect.signature(fn).parameters.values())[1:]
            if p.kind is p.POSITIONAL_OR_KEYWORD]
  text = _REGISTRY[name][1]
  return f"{text} [{', '.join(params)}]" if params else text


def evaluate_trajectory(name: str, progress, **params) -> np.ndarray:
  """Poses `[T, 4, 4]` of preset `name` at progress values `[T]` in [0, 1]."""
  fn = _lookup(name)
  sig = inspect.signature(fn)
  accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
  allowed = [p for p in list(sig.parameters)[1:] if sig.parameters[p].kind is not
             inspect.Parameter.VAR_KEYWORD]
  unknown = [k for k in params if k not in allowed]
  if unknown and not accepts_any:
    raise CameraFileError(f"camera trajectory {name!r} has no parameter {unknown[0]!r}: expected "
                          f"one of {', '.join(allowed) or '(none)'}")
  s = np.clip(np.asarray(progress, dtype=np.float64).reshape(-1), 0.0, 1.0)
  return np.asarray(fn(s, **params), dtype=np.float64)


def get_trajectory(name: str, num_frames: int, **params) -> np.ndarray:
  """Camera-to-world poses `[num_frames, 4, 4]` of a preset, relative to frame 0.

  Args:
    name: one of `list_trajectories()`.
    num_frames: T >= 1; frame k is at progress `k / (T - 1)`.
    **params: preset parameters (see `describe_trajectory(name)`).

  Raises:
    CameraFileError: unknown name or parameter, or `num_frames < 1`.
  """
  num_frames = int(num_frames)
  if num_frames < 1:
    raise CameraFileError(f"camera trajectory {name!r}: num_frames must be >= 1, got {num_frames}")
  s = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
  poses = evaluate_trajectory(name, s, **params)
  # Re-anchor exactly (removes ~1e-16 drift from look-at constructions).
  return relative_to(poses, poses[0])

"""Live camera control for streaming inference: one target pose per source frame.

The stream produces target frames at source-frame times t = 0, 1, 2, ...; the
model consumes one target pose per frame, camera-to-world relative to the
source camera's first frame (OpenCV axes, metres; see `realcam_jax.camera`).
`CameraController` holds that path as a function of frame index and lets a
user change it at any moment: hold a pose, follow a preset or a camera file,
or move relative to where the camera is heading ("pan 5", "dolly 0.2", ...).

Rules (see docs/streaming_inputs.md):

- The controller's `frame` is the next frame not yet generated (the session
  moves it with `take` / `advance_to`). A change requested at an earlier frame
  is moved to `frame`: generated frames are never changed, bit for bit.
- A change at frame f blends from the path in effect into the new one over
  `transition` frames: frame t gets weight `smoothstep((t - f + 1) / D)` on the
  new path (rotation by slerp, position by lerp), so frame f already moves and
  frame f + D - 1 is on the new path. Changes at frame 0 (nothing generated
  yet) apply at once. `hold` instead eases the camera to a stop over D frames.
- Relative moves and presets compose on the *commanded* pose (where the last
  command was heading, not the blend in progress), so quick repeated key
  presses add up. On a moving path, relative moves become a fixed offset in
  the moving camera's axes.
- A change replaces any change scheduled at the same or a later frame.
- A preset or camera path that ends before the video does holds its last
  pose; `describe()` reports `holding_last_pose` and a notice is recorded.
- Invalid input raises `CameraCommandError` and leaves the state unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading

import numpy as np

from realcam_jax.camera.interp import blend_poses, resample_path, smoothstep
from realcam_jax.camera.io import read_camera
from realcam_jax.camera.pose import (axis_angle_to_matrix, make_pose, relative_to, rotation_x,
                                     rotation_y)
from realcam_jax.camera.presets import get_trajectory, list_trajectories
from realcam_jax.camera.track import CameraTrack, orthonormalize
from realcam_jax.camera.validate import CameraFileError, check_pose, check_poses
from realcam_jax.inference.camera_commands import (COMMAND_HELP, KEY_BINDINGS, CameraCommand,
                                                   CameraCommandError, command_delta,
                                                   command_for_key, parse_command)

log = logging.getLogger(__name__)

__all__ = ["COMMAND_HELP", "KEY_BINDINGS", "CameraCommand", "CameraCommandError",
           "CameraController", "command_delta", "command_for_key", "parse_command", "pose_angles",
           "pose_from_angles"]

DEFAULT_PRESET_FRAMES = 81  # ReCamMaster's trajectory length

def pose_angles(c2w) -> tuple[float, float, float]:
  """`(yaw, pitch, roll)` in degrees of a `[4, 4]` (or `[3, 3]`) pose.

  `R = rotation_y(yaw) @ rotation_x(pitch) @ rotation_z(roll)`: yaw > 0 pans
  right, pitch > 0 tilts up, roll > 0 turns the camera's x axis towards +y
  (clockwise seen from behind the camera). Inverse of `pose_from_angles`.
  """
  r = np.asarray(c2w, np.float64)[:3, :3]
  yaw = np.arctan2(r[0, 2], r[2, 2])
  pitch = np.arcsin(np.clip(-r[1, 2], -1.0, 1.0))
  roll = np.arctan2(r[1, 0], r[1, 1])
  return tuple(float(np.rad2deg(a)) for a in (yaw, pitch, roll))


def pose_from_angles(position=(0.0, 0.0, 0.0), yaw=0.0, pitch=0.0, roll=0.0) -> np.ndarray:
  """`[4, 4]` pose at `position` (metres) with yaw/pitch/roll in degrees (see `pose_angles`)."""
  rot = (rotation_y(np.deg2rad(yaw)) @ rotation_x(np.deg2rad(pitch))
         @ axis_angle_to_matrix(np.array([0.0, 0.0, np.deg2rad(roll)])))
  return make_pose(rot, np.asarray(position, np.float64))


@dataclasses.dataclass(frozen=True)
class _Path:
  """Target path `left @ poses[clip(t - origin, 0, T - 1)] @ right` (held at both ends).

  Fractional t (used only to ease into a hold) interpolates neighbouring poses.
  """
  origin: int
  poses: np.ndarray            # [T, 4, 4]
  left: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(4))
  right: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(4))

  @property
  def end_frame(self) -> int:
    return self.origin + len(self.poses) - 1

  def __call__(self, t) -> np.ndarray:
    x = np.clip(np.asarray(t, np.float64) - self.origin, 0.0, len(self.poses) - 1)
    i0 = np.floor(x).astype(int)
    frac = x - i0
    i1 = np.minimum(i0 + 1, len(self.poses) - 1)
    poses = self.poses[i0]
    if np.any(frac > 0):
      mixed = blend_poses(self.poses[i0], self.poses[i1], frac)
      poses = np.where((frac > 0)[:, None, None], mixed, poses)
    return self.left @ poses @ self.right


@dataclasses.dataclass(frozen=True)
class _Segment:
  """The path in effect from frame `start` on, blended in over `duration` frames."""
  start: int
  duration: int
  path: _Path
  kind: str                    # "hold" | "preset" | "path"
  label: str                   # e.g. "pan 5", "preset arc_left", "reset"
  finite: bool = False         # a preset/file path that can end before the video

  @property
  def established(self) -> int:
    """First frame fully on this segment's path."""
    return self.start + max(self.duration, 1) - 1

  def weights(self, t) -> np.ndarray:
    t = np.asarray(t, np.float64)
    if self.duration <= 1:
      return (t >= self.start).astype(np.float64)
    return smoothstep((t - self.start + 1.0) / self.duration)


def _evaluate(segments: list[_Segment], frames) -> np.ndarray:
  """Effective poses `[N, 4, 4]` at (possibly fractional) `frames [N]`."""
  ts = np.asarray(frames, np.float64).reshape(-1)
  if ts.size == 0:
    return np.zeros((0, 4, 4))
  tmin = ts.min()
  k0 = 0
  for k in range(len(segments) - 1, -1, -1):
    if segments[k].established <= tmin:
      k0 = k
      break
  out = segments[k0].path(ts)
  for seg in segments[k0 + 1:]:
    w = seg.weights(ts)
    if not np.any(w > 0):
      continue
    target = seg.path(ts)
    full, part = w >= 1.0, (w > 0) & (w < 1.0)
    out = np.where(full[:, None, None], target, out)
    if part.any():
      out[part] = blend_poses(out[part], target[part], w[part])
  return out


def _locked(method):
  """Runs a method under the controller's lock (the web server and the session share it)."""
  @functools.wraps(method)
  def wrapper(self, *args, **kwargs):
    with self._lock:
      return method(self, *args, **kwargs)
  return wrapper


def _describe_pose(c2w) -> dict:
  yaw, pitch, roll = pose_angles(c2w)
  return {"position": [float(x) + 0.0 for x in c2w[:3, 3]], "yaw_deg": yaw + 0.0,
          "pitch_deg": pitch + 0.0, "roll_deg": roll + 0.0}


class CameraController:
  """Target camera path of a stream, changeable while it plays.

  Attributes:
    frame: next frame not yet generated; changes take effect from here.
    transition_frames: default blend length D of a change, in frames.
    num_frames_hint: expected video length (None for a live stream): the default
      length of presets started at frame f is `num_frames_hint - f`, and paths
      ending before it record a notice.
    preset_frames: preset length when there is no hint (81, ReCamMaster's).
    orbit_distance: metres ahead of the camera that `orbit` circles around.
    notices: human-readable messages (e.g. "path ends at frame 80 ...").

  `initial_pose` (default identity: the source camera's first frame) is where
  the stream starts and where `reset` returns. Methods are thread-safe (one
  lock), so a web handler may send commands while the session takes poses:

      ctl = CameraController(num_frames_hint=None, transition_frames=8)
      ctl.set_preset("arc_left")            # frame 0: applies at once
      poses = ctl.take(12)                  # [12, 4, 4] for frames 0..11
      ctl.apply_command("pan 5")            # blended into frames 12..19
      poses = ctl.take(12)
  """

  def __init__(self, num_frames_hint: int | None = None, transition_frames: int = 8,
               preset_frames: int = DEFAULT_PRESET_FRAMES, orbit_distance: float = 4.0,
               initial_pose=None):
    self.num_frames_hint = (None if num_frames_hint is None else
                            self._check_count("num_frames_hint", num_frames_hint, 1))
    self.transition_frames = self._check_count("transition_frames", transition_frames)
    self.preset_frames = self._check_count("preset_frames", preset_frames, minimum=1)
    if not np.isfinite(orbit_distance) or orbit_distance <= 0:
      raise CameraCommandError(f"orbit_distance must be a positive number of metres, got "
                               f"{orbit_distance}")
    self.orbit_distance = float(orbit_distance)
    self._lock = threading.RLock()
    self.frame = 0
    self.notices: list[str] = []
    self.last_command: str | None = None
    pose = np.eye(4) if initial_pose is None else self._check_pose(initial_pose)
    self._initial = pose
    self._segments = [_Segment(0, 0, _Path(0, pose[None]), "hold", "start")]

  # ------------------------------------------------------------ queries
  def poses_for(self, frame_start: int, count: int) -> np.ndarray:
    """Target poses `[count, 4, 4]` for frames `frame_start .. frame_start + count - 1`."""
    frame_start = self._check_count("frame_start", frame_start)
    count = self._check_count("count", count)
    return _evaluate(self._segments, np.arange(frame_start, frame_start + count))

  def pose_at(self, frame: int) -> np.ndarray:
    """Target pose `[4, 4]` at one frame."""
    return self.poses_for(frame, 1)[0]

  @_locked
  def take(self, count: int) -> np.ndarray:
    """Poses `[count, 4, 4]` for the next `count` frames, which become generated."""
    poses = self.poses_for(self.frame, count)
    self.frame += int(count)
    return poses

  @_locked
  def advance_to(self, frame: int):
    """Marks frames before `frame` as generated (never moves backwards)."""
    self.frame = max(self.frame, self._check_count("frame", frame))

  def commanded_pose(self, frame: int | None = None) -> np.ndarray:
    """`[4, 4]` pose the latest command at `frame` is heading for (no blending)."""
    frame = self.frame if frame is None else self._check_count("frame", frame)
    return self._latest(frame).path(np.array([frame]))[0]

  @_locked
  def describe(self, frame: int | None = None) -> dict:
    """JSON-able state for the web UI at `frame` (default: the next frame)."""
    frame = self.frame if frame is None else self._check_count("frame", frame)
    seg = self._latest(frame)
    end = seg.path.end_frame if seg.finite else None
    return {
        "frame": frame,
        "mode": seg.kind,
        "label": seg.label,
        "last_command": self.last_command,
        "pose": _describe_pose(self.pose_at(frame)),
        "target": _describe_pose(self.commanded_pose(frame)),
        "in_transition": bool(frame < seg.established),
        "transition_frames": self.transition_frames,
        "path_end_frame": end,
        "holding_last_pose": bool(end is not None and frame > end),
        "notices": list(self.notices[-5:]),
    }

  def path_preview(self, frame_start: int | None = None, count: int = 60) -> dict:
    """Upcoming camera centres and viewing directions for a path plot (JSON-able).

    Returns:
      dict with `frames [count]`, `positions [count][3]` and `forward [count][3]`
      (unit +z axes), in the source camera's first-frame axes (x right, y down,
      z forward; metres).
    """
    frame_start = self.frame if frame_start is None else frame_start
    poses = self.poses_for(frame_start, count)
    return {"frames": list(range(int(frame_start), int(frame_start) + int(count))),
            "positions": poses[:, :3, 3].tolist(), "forward": poses[:, :3, 2].tolist(),
            "axes": "x right, y down, z forward (metres, source camera's first frame)"}

  # ------------------------------------------------------------ changes
  @_locked
  def set_pose(self, c2w, at_frame: int | None = None, transition: int | None = None):
    """Holds a `[4, 4]` camera-to-world pose (relative to the source's first frame)."""
    pose = self._check_pose(c2w)
    f, d = self._when(at_frame, transition)
    self._push(_Segment(f, d, _Path(f, pose[None]), "hold", "pose"))

  @_locked
  def set_preset(self, name: str, at_frame: int | None = None, num_frames: int | None = None,
                 transition: int | None = None, **params):
    """Follows preset `name` from `at_frame`, starting at the commanded pose.

    Frame `at_frame + j` targets `commanded_pose(at_frame) @ get_trajectory(name,
    num_frames, **params)[j]`; after the last frame the last pose is held.
    `num_frames` defaults to `num_frames_hint - at_frame` (the rest of the
    video) when that is >= 2, else `preset_frames`.
    """
    f, d = self._when(at_frame, transition)
    if num_frames is None:
      rest = None if self.num_frames_hint is None else self.num_frames_hint - f
      num_frames = rest if rest is not None and rest >= 2 else self.preset_frames
    try:
      traj = get_trajectory(name, self._check_count("num_frames", num_frames, 1), **params)
    except (CameraFileError, TypeError, ValueError) as e:
      raise CameraCommandError(f"cannot follow preset {name!r}: {e}") from None
    base = self.commanded_pose(f)
    self._push(_Segment(f, d, _Path(f, traj, left=base), "preset", f"preset {name}",
                        finite=True))

  @_locked
  def set_path(self, poses, at_frame: int | None = None, transition: int | None = None,
               anchor: str = "current", label: str = "path"):
    """Follows a camera path `[T, 4, 4]` (or a `CameraTrack`), one pose per frame.

    Args:
      poses: the path; frame `at_frame + j` uses pose j; held after the end.
      at_frame: first frame (default: the next frame).
      transition: blend length (default `transition_frames`).
      anchor: "current": the path is taken relative to its first pose and starts
        at the commanded pose (like presets); "absolute": the poses are already
        relative to the source camera's first frame and are used as they are.
      label: shown by `describe()`.
    """
    if isinstance(poses, CameraTrack):
      poses = poses.poses
    try:
      poses = check_poses(poses, label)
    except CameraFileError as e:
      raise CameraCommandError(str(e)) from None
    if anchor not in ("current", "absolute"):
      raise CameraCommandError(f"unknown path anchor {anchor!r}: expected 'current' or "
                               "'absolute'")
    f, d = self._when(at_frame, transition)
    poses = orthonormalize(poses)
    if anchor == "current":
      path = _Path(f, relative_to(poses, poses[0]), left=self.commanded_pose(f))
    else:
      path = _Path(f, poses)
    self._push(_Segment(f, d, path, "path", label, finite=True))

  @_locked
  def set_trajectory(self, spec: str, at_frame: int | None = None, camera: str | None = None,
                     num_frames: int | None = None, **params):
    """A preset name or a camera file (any `read_camera` format), as the CLI takes it.

    A file's poses are used one per frame (anchored at the commanded pose);
    `num_frames` resamples them (slerp) to that many frames first. `camera`
    picks one camera of a multi-camera file; `params` are preset parameters.
    """
    spec = str(spec)
    if os.path.isfile(spec):
      if params:
        raise CameraCommandError(f"camera file {spec} takes no preset parameters, got "
                                 f"{', '.join(params)}")
      try:
        poses = read_camera(spec, camera).poses
      except CameraFileError as e:
        raise CameraCommandError(str(e)) from None
      if num_frames is not None:
        poses = resample_path(poses, self._check_count("num_frames", num_frames, 1))
      self.set_path(poses, at_frame, label=os.path.basename(spec))
    elif spec in list_trajectories():
      self.set_preset(spec, at_frame, num_frames, **params)
    else:
      raise CameraCommandError(f"trajectory {spec!r} is neither a camera file nor a preset: "
                               f"expected an existing file or one of "
                               f"{', '.join(list_trajectories())}")

  @_locked
  def hold(self, at_frame: int | None = None, transition: int | None = None):
    """Eases the camera to a stop over `transition` frames and holds it there.

    Frame t is the old path at the warped time `f - 1 + D * g((t - f + 1) / D)`,
    `g(u) = u - u^3 + u^4 / 2` (the integral of 1 - smoothstep): same position
    and speed at frame f - 1, zero speed from frame f + D - 1 on, where it
    holds the old path's pose at time f - 1 + D / 2.
    """
    f, d = self._when(at_frame, transition)
    u = np.arange(1, d + 1, dtype=np.float64) / max(d, 1)
    warped = (f - 1) + d * (u - u**3 + 0.5 * u**4) if d > 0 else np.array([f - 1.0])
    before = [s for s in self._segments if s.start < f]
    samples = _evaluate(before, np.maximum(warped, 0.0))
    self._push(_Segment(f, 0, _Path(f, samples), "hold", "hold"))

  @_locked
  def reset(self, at_frame: int | None = None, transition: int | None = None):
    """Returns to the initial pose (the source camera's first frame by default)."""
    f, d = self._when(at_frame, transition)
    self._push(_Segment(f, d, _Path(f, self._initial[None]), "hold", "reset"))

  @_locked
  def move(self, delta, at_frame: int | None = None, transition: int | None = None,
           label: str = "move"):
    """Applies a `[4, 4]` motion in the camera's own axes: target becomes `target @ delta`."""
    delta = self._check_pose(delta)
    f, d = self._when(at_frame, transition)
    seg = self._latest(f)
    right = orthonormalize((seg.path.right @ delta)[None])[0]
    path = dataclasses.replace(seg.path, right=right)
    self._push(_Segment(f, d, path, seg.kind, label, finite=seg.finite), notify=False)

  @_locked
  def apply_command(self, text: str, at_frame: int | None = None,
                    transition: int | None = None) -> CameraCommand:
    """Parses and applies a text command (see `parse_command`); returns it.

    Raises:
      CameraCommandError: invalid command; the controller is unchanged.
    """
    cmd = parse_command(text)
    if cmd.verb == "reset":
      self.reset(at_frame, transition)
    elif cmd.verb == "hold":
      self.hold(at_frame, transition)
    elif cmd.verb == "preset":
      params = dict(cmd.params)
      num_frames = params.pop("frames", None)
      self.set_preset(cmd.name, at_frame, num_frames, transition, **params)
    else:
      self.move(command_delta(cmd, self.orbit_distance), at_frame, transition, label=cmd.text)
    self.last_command = cmd.text
    return cmd

  # ------------------------------------------------------------ internals
  @staticmethod
  def _check_count(name, value, minimum=0) -> int:
    try:
      ok = float(value) == int(value) and int(value) >= minimum
    except (TypeError, ValueError, OverflowError):
      ok = False
    if not ok:
      raise CameraCommandError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)

  @staticmethod
  def _check_pose(c2w) -> np.ndarray:
    try:
      return check_pose(c2w, "camera control")
    except CameraFileError as e:
      raise CameraCommandError(str(e)) from None

  def _when(self, at_frame, transition) -> tuple[int, int]:
    f = self.frame if at_frame is None else max(self._check_count("at_frame", at_frame),
                                                self.frame)
    d = self.transition_frames if transition is None else self._check_count(
        "transition", transition)
    return f, (0 if f == 0 else d)

  def _latest(self, frame) -> _Segment:
    return next(s for s in reversed(self._segments) if s.start <= frame)

  def _push(self, seg: _Segment, notify: bool = True):
    self._segments = [s for s in self._segments if s.start < seg.start] + [seg]
    self.last_command = seg.label
    if notify and seg.finite and self.num_frames_hint is not None and seg.path.end_frame < (
        self.num_frames_hint - 1):
      msg = (f"{seg.label} ends at frame {seg.path.end_frame} but the video has "
             f"{self.num_frames_hint} frames: holding its last pose for the remaining "
             f"{self.num_frames_hint - 1 - seg.path.end_frame} frames")
      self.notices.append(msg)
      log.warning(msg)

"""Text camera commands of the live stream ("pan 5", "dolly 20 cm", ...) and key bindings.

`parse_command` turns one command into a `CameraCommand` (or raises
`CameraCommandError` listing the accepted commands); `command_delta` gives the
motion of a relative command in the camera's own axes (OpenCV: x right, y
down, z forward; metres). `CameraController.apply_command` uses both. The
language is documented in docs/streaming_inputs.md.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from realcam_jax.camera.pose import axis_angle_to_matrix, make_pose, rotation_x, rotation_y
from realcam_jax.camera.presets import list_trajectories

__all__ = ["COMMAND_HELP", "KEY_BINDINGS", "CameraCommand", "CameraCommandError",
           "command_delta", "command_for_key", "parse_command"]

# Keyboard keys of the web page (KeyboardEvent.key) -> command; see docs/streaming_inputs.md.
KEY_BINDINGS = {
    "ArrowLeft": "pan -5", "ArrowRight": "pan 5", "ArrowUp": "tilt 3", "ArrowDown": "tilt -3",
    "w": "dolly 0.1", "s": "dolly -0.1", "a": "truck -0.1", "d": "truck 0.1",
    "q": "pedestal 0.1", "e": "pedestal -0.1", "z": "roll -2", "c": "roll 2",
    "j": "orbit -10", "l": "orbit 10", "h": "hold", "r": "reset",
}

_ANGLE_VERBS = {"pan": "pan", "yaw": "pan", "tilt": "tilt", "pitch": "tilt", "roll": "roll",
                "orbit": "orbit"}
_LENGTH_VERBS = ("dolly", "truck", "pedestal")
_ANGLE_UNITS = {"": 1.0, "deg": 1.0, "degree": 1.0, "degrees": 1.0, "°": 1.0,
                "rad": float(np.rad2deg(1.0)), "radian": float(np.rad2deg(1.0)),
                "radians": float(np.rad2deg(1.0))}
_LENGTH_UNITS = {"": 1.0, "m": 1.0, "metre": 1.0, "metres": 1.0, "meter": 1.0, "meters": 1.0,
                 "cm": 0.01, "mm": 0.001}
MAX_ANGLE_DEG = 360.0
MAX_DISTANCE_M = 100.0
_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(\S*)$")

COMMAND_HELP = (
    "accepted commands: pan|tilt|roll|orbit ANGLE [deg|rad] (degrees by default; pan > 0 turns "
    "right, tilt > 0 up, orbit > 0 circles right around a point ahead), e.g. 'pan -5', "
    "'tilt 3 deg'; dolly|truck|pedestal DISTANCE [m|cm|mm] (metres by default; dolly > 0 "
    "forward, truck > 0 right, pedestal > 0 up), e.g. 'dolly 0.2'; preset NAME [key=value ...] "
    "(frames=N sets its length), e.g. 'preset arc_left', 'preset orbit degrees=45 frames=60'; "
    "hold; reset")


class CameraCommandError(ValueError):
  """A camera command or control input is invalid; the controller state is unchanged."""


@dataclasses.dataclass(frozen=True)
class CameraCommand:
  """A parsed text command.

  Attributes:
    verb: pan | tilt | roll | orbit | dolly | truck | pedestal | preset | hold | reset.
    value: degrees for pan/tilt/roll/orbit, metres for dolly/truck/pedestal, else None.
    name: the preset name for `preset`, else None.
    params: preset parameters (`frames` -> the preset length).
    text: the normalised command text, e.g. "pan -5 deg".
  """
  verb: str
  value: float | None = None
  name: str | None = None
  params: dict = dataclasses.field(default_factory=dict)
  text: str = ""

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _bad(text, why):
  return CameraCommandError(f"invalid camera command {text!r}: {why}; {COMMAND_HELP}")


def _param_value(v: str):
  for cast in (int, float):
    try:
      return cast(v)
    except ValueError:
      pass
  if v.lower() in ("true", "false"):
    return v.lower() == "true"
  if "," in v:
    return tuple(_param_value(x) for x in v.split(","))
  return v


def parse_command(text: str) -> CameraCommand:
  """Parses one text command (case-insensitive; see `COMMAND_HELP`).

  Raises:
    CameraCommandError: with the accepted commands and formats.
  """
  if not isinstance(text, str):
    raise _bad(text, f"expected a string, got {type(text).__name__}")
  words = text.strip().split()
  if not words:
    raise _bad(text, "the command is empty")
  verb, rest = words[0].lower(), words[1:]
  if verb in ("reset", "hold"):
    if rest:
      raise _bad(text, f"'{verb}' takes no arguments")
    return CameraCommand(verb, text=verb)
  if verb == "preset":
    if not rest:
      raise _bad(text, "'preset' needs a preset name")
    name = rest[0].lower()
    if name not in list_trajectories():
      raise _bad(text, f"unknown preset {rest[0]!r} (presets: {', '.join(list_trajectories())})")
    params = {}
    for item in rest[1:]:
      key, eq, value = item.partition("=")
      if not eq or not key or not value:
        raise _bad(text, f"preset parameter {item!r} is not key=value")
      params[key] = _param_value(value)
    if "frames" in params and not (isinstance(params["frames"], int) and params["frames"] >= 1):
      raise _bad(text, f"frames must be an integer >= 1, got {params['frames']!r}")
    return CameraCommand("preset", name=name, params=params, text=" ".join(["preset"] + rest))
  if verb in _ANGLE_VERBS or verb in _LENGTH_VERBS:
    angle = verb in _ANGLE_VERBS
    verb = _ANGLE_VERBS.get(verb, verb)
    m = _NUMBER.match(" ".join(rest).lower())
    if not rest or m is None:
      raise _bad(text, f"'{verb}' needs a number, optionally with a unit")
    units = _ANGLE_UNITS if angle else _LENGTH_UNITS
    if m.group(2) not in units:
      raise _bad(text, f"unknown unit {m.group(2)!r} for '{verb}' (expected "
                 f"{', '.join(u for u in units if u)})")
    value = float(m.group(1)) * units[m.group(2)]
    limit = MAX_ANGLE_DEG if angle else MAX_DISTANCE_M
    if not abs(value) <= limit:
      raise _bad(text, f"{value:g} is out of range (|{verb}| <= {limit:g} "
                 f"{'deg' if angle else 'm'})")
    return CameraCommand(verb, value=value, text=f"{verb} {value:g} {'deg' if angle else 'm'}")
  raise _bad(text, f"unknown command {words[0]!r}")


def command_delta(cmd: CameraCommand, orbit_distance: float = 4.0) -> np.ndarray:
  """The `[4, 4]` motion of a relative command in the camera's own axes."""
  v = cmd.value
  if cmd.verb in ("pan", "tilt", "roll", "orbit"):
    a = np.deg2rad(v)
    rot = {"pan": lambda: rotation_y(a), "tilt": lambda: rotation_x(a),
           "roll": lambda: axis_angle_to_matrix(np.array([0.0, 0.0, a])),
           "orbit": lambda: rotation_y(-a)}[cmd.verb]()
    if cmd.verb != "orbit":
      return make_pose(rot, np.zeros(3))
    centre = np.array([0.0, 0.0, orbit_distance])  # circle a point ahead, keep looking at it
    return make_pose(rot, centre - rot @ centre)
  offset = {"dolly": (0.0, 0.0, v), "truck": (v, 0.0, 0.0), "pedestal": (0.0, -v, 0.0)}
  if cmd.verb not in offset:
    raise CameraCommandError(f"command {cmd.text!r} is not a relative move")
  return make_pose(np.eye(3), np.array(offset[cmd.verb]))


def command_for_key(key: str) -> str | None:
  """The command bound to a `KeyboardEvent.key` (letters case-insensitive), or None."""
  return KEY_BINDINGS.get(key, KEY_BINDINGS.get(str(key).lower()))

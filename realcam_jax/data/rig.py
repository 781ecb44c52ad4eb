"""Camera rigs for the synthetic world: where the source and target cameras go.

Every camera of a clip starts at a pose that looks at the scene content from
outside the object region (`look_at(eye, look)`), then follows a named
trajectory from `realcam_jax.camera.presets`, run in the camera's *level*
frame (same centre and heading, no pitch) with the pitch applied last:

  c2w_world[t] = level @ trajectory[t] @ pitch      (trajectory[0] = identity)

so pans, arcs and orbits turn about the vertical and the horizon stays level.

Source camera: azimuth uniform around the scene, `distance` metres from a
look-at point near the origin, `elevation_deg` above it, moving along one of
`source_trajectories` (ReCamMaster-like gentle paths by default). Target
cameras: the source's base pose moved by a random viewpoint change (azimuth
+-`azimuth_change_deg`, elevation `elevation_change_deg`, distance x
`distance_scale`, look-at point jittered), so frame 0 differs from the source
as in MultiCamVideo, then one of `target_trajectories`. Preset magnitudes are
scaled by `magnitude`; presets that look at or circle a point get it at the
horizontal distance to the camera's look-at point, so the scene stays in view.

Near-source targets (`near_fraction` of the target cameras; 0 by default, so the
dataset's clips and the held-out test split keep their 15-75 deg pairs): the
camera starts at the source camera's first pose (or within `near_start_jitter`
of it) and moves away along one of `near_trajectories`, in MultiCamVideo's
ranges (`NEAR_RANGES`: pan 5-45 deg, tilt 5-30 deg, translations 1/4-1 x the
distance to the subject, arcs 15-75 deg about it, smoothed random polylines
through 1-3 points, static, or following the source camera exactly), half at
constant speed and half eased (`eased_progress`). This is where every
interactive stream and every ReCamMaster preset starts.

A rig is re-drawn (same seed stream, so still deterministic) when a camera
would dip below `min_height` or come within `clearance` metres of any
object's motion-swept bounding sphere.
"""

from __future__ import annotations

import numpy as np

from realcam_jax.camera import presets
from realcam_jax.camera.intrinsics import intrinsics_from_fov
from realcam_jax.camera.pose import look_at, make_pose, rotation_x
from realcam_jax.data.near_source import near_source_path
from realcam_jax.data.scene import Scene

WORLD_UP = np.array([0.0, 0.0, 1.0])
RECAM_PATHS = ("pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out",
               "translate_up", "translate_down", "arc_left", "arc_right")
LOOPS = ("out_and_back", "circle")
OPEN_PATHS = RECAM_PATHS + ("orbit", "dolly", "random_polyline")
# Near-source families and their magnitude ranges (ReCamMaster's MultiCamVideo data;
# lengths as multiples of the distance from the camera to its subject).
NEAR_PATHS = ("static", "follow_source", "pan", "tilt", "translate", "arc", "random_polyline")
NEAR_RANGES = dict(pan_deg=(5.0, 45.0), tilt_deg=(5.0, 30.0), translate=(0.25, 1.0),
                   arc_deg=(15.0, 75.0), polyline_points=(1, 3), polyline_step=(0.25, 0.6),
                   ease_rate=(1.0, 6.0))

DEFAULT_RIG = dict(
    fov_deg=(50.0, 70.0),              # horizontal field of view, shared by all cameras
    distance=(6.0, 9.5),               # source camera to its look-at point (m)
    elevation_deg=(5.0, 30.0),         # source camera above its look-at point
    look_height=(0.3, 1.2),            # look-at point height (m)
    look_jitter=0.6,                   # look-at point offset from the origin (m, std)
    azimuth_change_deg=(15.0, 75.0),   # |target - source| azimuth at frame 0
    elevation_change_deg=(-5.0, 15.0),
    distance_scale=(0.85, 1.2),        # target distance / source distance
    target_look_jitter=0.3,            # target look-at point offset (m, std)
    source_trajectories=("static",) + RECAM_PATHS + ("dolly", "random_polyline"),
    target_trajectories=RECAM_PATHS + ("orbit", "dolly", "random_polyline") + LOOPS,
    magnitude=(0.6, 1.5),              # scale on preset motion magnitudes
    min_height=0.3,                    # lowest camera height (m)
    clearance=0.5,                     # min distance to any object's swept sphere (m)
    near_fraction=0.0,                 # share of target cameras that start at the source
    near_trajectories=NEAR_PATHS,      # their families (see NEAR_RANGES)
    near_start_jitter=(3.0, 0.15),     # max start offset from the source: (deg, m); half
                                       # of the near targets start exactly at the source
)

_MAX_TRIES = 64


class RigError(ValueError):
  """A rig config is unusable or no valid rig was found."""


def validate_rig_config(cfg: dict) -> dict:
  """Fills defaults into a rig config and checks it; returns the full dict."""
  unknown = set(cfg) - set(DEFAULT_RIG)
  if unknown:
    raise RigError(f"unknown rig config fields {sorted(unknown)}; expected some of "
                   f"{sorted(DEFAULT_RIG)}")
  full = {**DEFAULT_RIG, **cfg}
  known = presets.list_trajectories()
  for key in ("source_trajectories", "target_trajectories", "near_trajectories"):
    names = full[key]
    if isinstance(names, str):
      names = tuple(n.strip() for n in names.split(",") if n.strip())
    names = tuple(names)
    if not names:
      raise RigError(f"rig config {key} is empty; expected at least one of {known}")
    allowed = NEAR_PATHS if key == "near_trajectories" else known
    bad = [n for n in names if n not in allowed]
    if bad:
      raise RigError(f"rig config {key} has unknown trajectory family {bad[0]!r}; "
                     f"expected names from {list(allowed)}")
    full[key] = names
  for key in ("fov_deg", "distance", "elevation_deg", "look_height", "azimuth_change_deg",
              "elevation_change_deg", "distance_scale", "magnitude"):
    try:
      lo, hi = (float(v) for v in full[key])
    except (TypeError, ValueError):
      raise RigError(f"rig config {key}={full[key]!r}: expected a (min, max) pair") from None
    if lo > hi:
      raise RigError(f"rig config {key}={full[key]!r}: min is larger than max")
    full[key] = (lo, hi)
  if not (1.0 <= full["fov_deg"][0] and full["fov_deg"][1] < 179.0):
    raise RigError(f"rig config fov_deg={full['fov_deg']}: expected degrees in [1, 179)")
  if not 0.0 <= float(full["near_fraction"]) <= 1.0:
    raise RigError(f"rig config near_fraction={full['near_fraction']!r}: expected a share in "
                   "[0, 1]")
  try:
    jit_deg, jit_m = (float(v) for v in full["near_start_jitter"])
  except (TypeError, ValueError):
    raise RigError(f"rig config near_start_jitter={full['near_start_jitter']!r}: expected "
                   "(degrees, metres)") from None
  if jit_deg < 0 or jit_m < 0:
    raise RigError(f"rig config near_start_jitter={full['near_start_jitter']!r}: expected "
                   "non-negative (degrees, metres)")
  full["near_fraction"], full["near_start_jitter"] = float(full["near_fraction"]), (jit_deg, jit_m)
  if full["distance"][0] <= 0 or full["distance_scale"][0] <= 0:
    raise RigError("rig config distance and distance_scale must be positive")
  if not (-80 <= full["elevation_deg"][0] and full["elevation_deg"][1] <= 80):
    raise RigError(f"rig config elevation_deg={full['elevation_deg']}: expected [-80, 80]")
  return full


def trajectory_names() -> list[str]:
  """Every name a rig can give a camera path: the presets, then "near:<family>"."""
  return presets.list_trajectories() + [f"near:{n}" for n in NEAR_PATHS]


def trajectory_params(name: str, rng, distance: float, scale: float) -> dict:
  """Random parameters of one preset, magnitudes scaled by `scale`."""
  sign = rng.choice([-1.0, 1.0])
  reach = presets.RECAM_REACH
  table = {
      "pan_left": lambda: dict(degrees=20.0 * reach * scale),
      "pan_right": lambda: dict(degrees=20.0 * reach * scale),
      "tilt_up": lambda: dict(degrees=10.0 * reach * scale),
      "tilt_down": lambda: dict(degrees=10.0 * reach * scale),
      "zoom_in": lambda: dict(distance=2.0 * reach * scale),
      "zoom_out": lambda: dict(distance=2.0 * reach * scale),
      "translate_up": lambda: dict(distance=1.0 * reach * scale, target_distance=distance),
      "translate_down": lambda: dict(distance=1.0 * reach * scale, target_distance=distance),
      "arc_left": lambda: dict(distance=2.0 * reach * scale, target_distance=distance),
      "arc_right": lambda: dict(distance=2.0 * reach * scale, target_distance=distance),
      "orbit": lambda: dict(degrees=sign * rng.uniform(20.0, 45.0) * scale, radius=distance,
                            height=rng.uniform(-0.3, 1.0) * scale),
      "dolly": lambda: dict(distance=rng.uniform(0.5, 1.5) * scale,
                            direction=(rng.normal(), 0.3 * rng.normal(), rng.normal())),
      "random_polyline": lambda: dict(seed=int(rng.integers(2**31)), target_distance=distance,
                                      step=0.7 * scale,
                                      speed=str(rng.choice(["constant", "variable"]))),
      # heading "tangent" would turn the camera a full circle, away from the scene.
      "circle": lambda: dict(radius=rng.uniform(0.3, 0.8) * scale, heading="fixed"),
  }
  if name == "out_and_back":
    base = str(rng.choice(OPEN_PATHS))
    return dict(base=base, **trajectory_params(base, rng, distance, scale))
  return table[name]() if name in table else {}


def _spherical(center, distance, azimuth, elevation):
  ce = np.cos(elevation)
  return center + distance * np.array([ce * np.cos(azimuth), ce * np.sin(azimuth),
                                       np.sin(elevation)])


def _level_frame(look, distance, azimuth, elevation):
  """(level f64[4,4], pitch f64[4,4], horizontal distance to `look`) of a camera at frame 0.

  `level @ pitch` is exactly `look_at(eye, look, WORLD_UP)`.
  """
  eye = _spherical(look, distance, azimuth, elevation)
  ahead = np.array([look[0] - eye[0], look[1] - eye[1], 0.0])
  level = look_at(eye, eye + ahead, WORLD_UP)
  pitch = make_pose(rotation_x(-elevation), np.zeros(3))
  return level, pitch, float(np.linalg.norm(ahead))


def _camera_path(look, distance, azimuth, elevation, name, rng, scale, num_frames):
  """World poses f64[T, 4, 4] of a camera looking at `look` and following preset `name`.

  The preset runs in the camera's level frame (same centre and heading, no
  pitch) and the pitch is applied last: `c2w = level @ preset @ pitch`, so
  pans, arcs and orbits turn about the vertical and the horizon stays level.
  Frame 0 is exactly `look_at(eye, look, WORLD_UP)`.
  """
  level, pitch, ahead = _level_frame(look, distance, azimuth, elevation)
  params = trajectory_params(name, rng, ahead, scale)
  return level @ presets.get_trajectory(name, num_frames, **params) @ pitch


def swept_spheres(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
  """Bounding spheres of the active objects over all time: (centres [M,3], radii [M])."""
  centers, radii = [], []
  for g in (scene.spheres, scene.boxes, scene.cylinders):
    g_active = np.asarray(g.active)
    size, u, v = (np.asarray(a)[g_active] for a in (g.size, g.motion_u, g.motion_v))
    c = np.asarray(g.center)[g_active].copy()
    bounce = np.asarray(g.bounce)[g_active]
    c[:, 2] += bounce / 2
    radii.append(np.linalg.norm(size, axis=-1) + np.linalg.norm(u, axis=-1)
                 + np.linalg.norm(v, axis=-1) + bounce / 2)
    centers.append(c)
  return np.concatenate(centers), np.concatenate(radii)


def _rig_problem(poses, spheres, min_height, clearance):
  eyes = poses[..., :3, 3].reshape(-1, 3)
  if eyes[:, 2].min() < min_height:
    return f"a camera dips to height {eyes[:, 2].min():.2f} m"
  centres, radii = spheres
  if len(radii):
    gap = np.linalg.norm(eyes[:, None] - centres[None], axis=-1) - radii[None]
    if gap.min() < clearance:
      return f"a camera comes within {gap.min():.2f} m of an object"
  return None


def sample_rig(scene: Scene, seed: int, num_frames: int, width: int, height: int,
               num_target_cameras: int = 1, **cfg) -> dict:
  """Draws the cameras of one clip (deterministic per seed).

  Args:
    scene: the world the cameras look at (for collision checks).
    seed: clip seed.
    num_frames: T >= 1.
    width, height: image size in pixels (for the intrinsics).
    num_target_cameras: C >= 0.
    **cfg: overrides of `DEFAULT_RIG`.

  Returns:
    dict(source_c2w f64[T,4,4], target_c2w f64[C,T,4,4], intrinsics f64[3,3],
    source_trajectory str, target_trajectories list[str] (C; `trajectory_names()`:
    near-source cameras are "near:<family>"), target_details list[str] (C; with the
    drawn magnitude and speed of near-source cameras), source_distance
    float (m from the source camera to its look-at point),
    view_change f64[C, 2]: rotation (deg) and camera-centre distance (m)
    between the source and each target camera at frame 0).
  """
  cfg = validate_rig_config(cfg)
  rng = np.random.default_rng([int(seed), 0x816])
  spheres = swept_spheres(scene)
  deg = np.deg2rad
  last = None
  for _ in range(_MAX_TRIES):
    fov = rng.uniform(*cfg["fov_deg"])
    look = np.array([*(rng.normal(0.0, cfg["look_jitter"], 2)), rng.uniform(*cfg["look_height"])])
    dist = rng.uniform(*cfg["distance"])
    az, el = rng.uniform(0, 2 * np.pi), deg(rng.uniform(*cfg["elevation_deg"]))
    name = str(rng.choice(cfg["source_trajectories"]))
    source = _camera_path(look, dist, az, el, name, rng, rng.uniform(*cfg["magnitude"]),
                          num_frames)
    targets, names, details = [], [], []
    for _ in range(num_target_cameras):
      if cfg["near_fraction"] > 0 and rng.random() < cfg["near_fraction"]:
        level, pitch, ahead = _level_frame(look, dist, az, el)
        path, t_name, label = near_source_path(level, pitch, source, ahead, rng, cfg,
                                               NEAR_RANGES)
        targets.append(path)
        names.append(t_name)
        details.append(label)
        continue
      d_az = rng.choice([-1.0, 1.0]) * deg(rng.uniform(*cfg["azimuth_change_deg"]))
      d_el = deg(rng.uniform(*cfg["elevation_change_deg"]))
      t_dist = dist * rng.uniform(*cfg["distance_scale"])
      t_look = look + rng.normal(0.0, cfg["target_look_jitter"], 3) * np.array([1, 1, 0.3])
      t_el = np.clip(el + d_el, deg(-30.0), deg(75.0))
      t_name = str(rng.choice(cfg["target_trajectories"]))
      targets.append(_camera_path(t_look, t_dist, az + d_az, t_el, t_name, rng,
                                  rng.uniform(*cfg["magnitude"]), num_frames))
      names.append(t_name)
      details.append(t_name)
    target = np.stack(targets) if targets else np.zeros((0, num_frames, 4, 4))
    last = _rig_problem(np.concatenate([source[None], target]), spheres, cfg["min_height"],
                        cfg["clearance"])
    if last is None:
      break
  else:
    raise RigError(f"no valid camera rig for seed {seed} in {_MAX_TRIES} tries (last: {last}); "
                   "widen rig.distance or lower rig.clearance / rig.min_height")
  rel_rot = np.einsum("ji,cjk->cik", source[0, :3, :3], target[:, 0, :3, :3])
  angle = np.degrees(np.arccos(np.clip((np.trace(rel_rot, axis1=1, axis2=2) - 1) / 2, -1, 1)))
  shift = np.linalg.norm(target[:, 0, :3, 3] - source[0, :3, 3], axis=-1)
  return dict(source_c2w=source, target_c2w=target,
              intrinsics=np.asarray(intrinsics_from_fov(fov, width, height), np.float64),
              source_trajectory=name, target_trajectories=names, target_details=details,
              source_distance=dist,
              view_change=np.stack([angle, shift], -1).reshape(-1, 2))

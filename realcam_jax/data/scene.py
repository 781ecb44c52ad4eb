"""Procedural dynamic 3D scenes for the synthetic multi-camera world.

World frame: metres, z up, the ground is the plane z = 0 and the scene content
lives inside a disc of radius `region_radius` around the origin. (Cameras use
the project convention: camera-to-world 4x4 with OpenCV axes, x right, y down,
z forward; see `realcam_jax.camera`.)

A `Scene` is a pytree of arrays, so one jitted renderer serves every seed with
the same object-slot counts. Objects come in three kinds, each in its own
fixed-size group of slots (unused slots have `active = False`):

  spheres    size = (radius, radius, radius)
  boxes      size = half extents (x, y, z) in the object frame (yawed about z)
  cylinders  size = (radius, radius, half height), axis along world z

Motion of an object at time t (seconds):

  centre(t) = centre + u * sin(omega t + phase) + v * cos(omega t + phase)
              + (0, 0, bounce * |sin(bounce_omega t)|)
  yaw(t)    = yaw + spin * t

u = v = 0 with bounce = spin = 0 is static; u alone is a back-and-forth line;
u perpendicular to v with |u| = |v| is a circle. Textures are attached to the
object frame, so they move with the object.
"""

from __future__ import annotations

import dataclasses
import jax
import numpy as np

KINDS = ("spheres", "boxes", "cylinders")
SPHERE, BOX, CYLINDER = 0, 1, 2
# Texture patterns on objects (in object-frame coordinates).
PATTERNS = ("solid", "checker", "stripes_z", "stripes_x")


@dataclasses.dataclass(frozen=True)
class Objects:
  """A group of N object slots of one kind. All fields have leading dim N."""
  kind: np.ndarray          # i32[N]  SPHERE | BOX | CYLINDER
  active: np.ndarray        # bool[N]
  moving: np.ndarray        # bool[N]
  center: np.ndarray        # f32[N, 3] position at the motion's rest point
  size: np.ndarray          # f32[N, 3] see module docstring
  motion_u: np.ndarray      # f32[N, 3]
  motion_v: np.ndarray      # f32[N, 3]
  omega: np.ndarray         # f32[N] rad/s
  phase: np.ndarray         # f32[N] rad
  bounce: np.ndarray        # f32[N] m
  bounce_omega: np.ndarray  # f32[N] rad/s
  yaw: np.ndarray           # f32[N] rad
  spin: np.ndarray          # f32[N] rad/s
  color_a: np.ndarray       # f32[N, 3] linear RGB in [0, 1]
  color_b: np.ndarray       # f32[N, 3]
  pattern: np.ndarray       # i32[N] index into PATTERNS
  pattern_scale: np.ndarray  # f32[N] m


@dataclasses.dataclass(frozen=True)
class Scene:
  """One procedurally generated world (a pytree of arrays)."""
  spheres: Objects
  boxes: Objects
  cylinders: Objects
  ground_colors: np.ndarray   # f32[2, 3] checker colours
  ground_cell: np.ndarray     # f32[] checker cell size (m)
  ground_jitter: np.ndarray   # f32[] per-cell brightness jitter
  ground_tint: np.ndarray     # f32[3] colour of the low-frequency patches
  ground_noise: np.ndarray    # f32[] patch size (m)
  ground_seed: np.ndarray     # u32[] hash seed for ground and clouds
  haze_range: np.ndarray      # f32[2] distance from origin where haze starts/ends
  sky_zenith: np.ndarray      # f32[3]
  sky_horizon: np.ndarray     # f32[3]
  sun_dir: np.ndarray         # f32[3] unit vector towards the sun
  sun_color: np.ndarray       # f32[3]
  clouds: np.ndarray          # f32[] cloud cover in [0, 1]
  ambient: np.ndarray         # f32[] ambient light fraction


for _cls in (Objects, Scene):
  jax.tree_util.register_dataclass(
      _cls, data_fields=[f.name for f in dataclasses.fields(_cls)], meta_fields=[])


DEFAULT_SCENE = dict(
    num_spheres=(1, 4),        # (min, max) objects per kind; max = slot count
    num_boxes=(1, 3),
    num_cylinders=(1, 2),
    moving_fraction=0.5,       # probability that an object moves
    region_radius=3.5,         # object centres (incl. motion) stay inside
    size_range=(0.35, 1.0),    # characteristic object size (m)
    speed_range=(0.4, 1.5),    # peak speed of moving objects (m/s)
)


def _check_range(name, value, lo, hi=None, integer=False):
  try:
    a, b = value
  except (TypeError, ValueError):
    raise ValueError(f"scene config {name}={value!r}: expected a (min, max) pair") from None
  if integer and (int(a) != a or int(b) != b):
    raise ValueError(f"scene config {name}={value!r}: expected whole numbers")
  if not (lo <= a <= b and (hi is None or b <= hi)):
    bound = f"{lo} <= min <= max" + (f" <= {hi}" if hi is not None else "")
    raise ValueError(f"scene config {name}={value!r}: expected {bound}")
  return a, b


def validate_scene_config(cfg: dict) -> dict:
  """Fills defaults into a scene config and checks it; returns the full dict."""
  unknown = set(cfg) - set(DEFAULT_SCENE)
  if unknown:
    raise ValueError(f"unknown scene config fields {sorted(unknown)}; "
                     f"expected some of {sorted(DEFAULT_SCENE)}")
  full = {**DEFAULT_SCENE, **cfg}
  for k in ("num_spheres", "num_boxes", "num_cylinders"):
    full[k] = tuple(int(x) for x in _check_range(k, full[k], 0, 16, integer=True))
  if sum(full[k][1] for k in ("num_spheres", "num_boxes", "num_cylinders")) == 0:
    raise ValueError("scene config: num_spheres, num_boxes and num_cylinders all have max 0; "
                     "expected at least one object slot")
  full["size_range"] = _check_range("size_range", full["size_range"], 0.05, 5.0)
  full["speed_range"] = _check_range("speed_range", full["speed_range"], 0.0, 20.0)
  if not 0.0 <= full["moving_fraction"] <= 1.0:
    raise ValueError(f"scene config moving_fraction={full['moving_fraction']!r}: expected [0, 1]")
  if not 0.5 <= full["region_radius"] <= 100.0:
    raise ValueError(f"scene config region_radius={full['region_radius']!r}: "
                     "expected 0.5..100 m")
  return full


def _hsv_to_rgb(h, s, v):
  i = np.floor(h * 6.0) % 6
  f = h * 6.0 - np.floor(h * 6.0)
  p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
  table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
  return np.array(table[int(i)], np.float32)


def _random_color(rng, sat=(0.3, 0.9), val=(0.35, 0.95)):
  return _hsv_to_rgb(rng.uniform(), rng.uniform(*sat), rng.uniform(*val))


def _make_objects(rng, kind: int, count: int, slots: int, cfg: dict) -> Objects:
  """Samples `count` active objects of one kind into `slots` slots."""
  n = slots  # unused slots stay inactive; an empty group is skipped by the renderer
  f = lambda *shape: np.zeros((n, *shape), np.float32)
  o = dict(kind=np.full((n,), kind, np.int32), active=np.zeros((n,), bool),
           moving=np.zeros((n,), bool), center=f(3), size=f(3), motion_u=f(3),
           motion_v=f(3), omega=f(), phase=f(), bounce=f(), bounce_omega=f(), yaw=f(),
           spin=f(), color_a=f(3), color_b=f(3), pattern=np.zeros((n,), np.int32),
           pattern_scale=np.ones((n,), np.float32))
  radius = cfg["region_radius"]
  for i in range(count):
    s = rng.uniform(*cfg["size_range"])
    if kind == SPHERE:
      size = np.full(3, s)
    elif kind == BOX:
      size = s * rng.uniform(0.5, 1.3, 3)
    else:
      size = np.array([s * rng.uniform(0.4, 0.8)] * 2 + [s * rng.uniform(0.7, 1.8)])
    moving = rng.uniform() < cfg["moving_fraction"]
    amp = rng.uniform(0.8, 2.0) if moving else 0.0
    # Keep centre + amplitude inside the region.
    r = np.sqrt(rng.uniform()) * max(radius - amp - size[0], 0.0)
    a = rng.uniform(0, 2 * np.pi)
    o["center"][i] = [r * np.cos(a), r * np.sin(a), size[2]]
    o["size"][i] = size
    if moving:
      o["moving"][i] = True
      speed = rng.uniform(*cfg["speed_range"])
      o["omega"][i] = speed / amp
      o["phase"][i] = rng.uniform(0, 2 * np.pi)
      d = rng.uniform(0, 2 * np.pi)
      u = amp * np.array([np.cos(d), np.sin(d), 0.0])
      o["motion_u"][i] = u
      if rng.uniform() < 0.5:  # circle instead of a line
        o["motion_v"][i] = [-u[1], u[0], 0.0]
      if kind == SPHERE and rng.uniform() < 0.4:
        o["bounce"][i] = rng.uniform(0.3, 1.0)
        o["bounce_omega"][i] = rng.uniform(1.5, 4.0)
      if kind != SPHERE or rng.uniform() < 0.5:
        o["spin"][i] = rng.uniform(-1.5, 1.5)
    o["active"][i] = True
    o["yaw"][i] = rng.uniform(0, 2 * np.pi)
    o["color_a"][i] = _random_color(rng)
    o["color_b"][i] = _random_color(rng) if rng.uniform() < 0.6 else o["color_a"][i] * 0.45
    o["pattern"][i] = rng.integers(len(PATTERNS))
    o["pattern_scale"][i] = rng.uniform(0.12, 0.4) * max(s, 0.3)
  return Objects(**o)


def make_scene(seed: int, **cfg) -> Scene:
  """Samples a deterministic random scene.

  Args:
    seed: any non-negative int; the same seed and config give the same scene.
    **cfg: overrides of `DEFAULT_SCENE` (object counts as (min, max) per kind,
      `moving_fraction`, `region_radius`, `size_range`, `speed_range`).

  Returns:
    A `Scene` with numpy leaves (object groups with max-count slots).
  """
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"scene seed {seed!r}: expected a non-negative int")
  cfg = validate_scene_config(cfg)
  rng = np.random.default_rng([int(seed), 0x5CE4E])
  groups = {}
  for kind, name in enumerate(KINDS):
    lo, hi = cfg[f"num_{name}"]
    groups[name] = _make_objects(rng, kind, int(rng.integers(lo, hi + 1)), hi, cfg)
  # Ground: two related colours (grass/dirt/stone/tiles), patches of a tint.
  base = _random_color(rng, sat=(0.15, 0.6), val=(0.45, 0.8))
  other = np.clip(base * rng.uniform(0.55, 0.85) + rng.uniform(-0.08, 0.08, 3), 0, 1)
  sun_el = np.radians(rng.uniform(25, 70))
  sun_az = rng.uniform(0, 2 * np.pi)
  warm = rng.uniform()  # 0 = midday blue sky, 1 = warm evening sky
  zenith = (1 - warm) * np.array([0.22, 0.42, 0.85]) + warm * np.array([0.3, 0.35, 0.65])
  horizon = (1 - warm) * np.array([0.7, 0.82, 0.95]) + warm * np.array([0.95, 0.75, 0.55])
  f32 = lambda x: np.asarray(x, np.float32)
  return Scene(
      **groups,
      ground_colors=f32([base, other]),
      ground_cell=f32(rng.uniform(0.6, 2.0)),
      ground_jitter=f32(rng.uniform(0.05, 0.25)),
      ground_tint=f32(_random_color(rng, sat=(0.2, 0.6), val=(0.3, 0.6))),
      ground_noise=f32(rng.uniform(2.0, 6.0)),
      ground_seed=np.asarray(rng.integers(1, 2**31), np.uint32),
      haze_range=f32([cfg["region_radius"] * 4, cfg["region_radius"] * 12]),
      sky_zenith=f32(zenith + rng.uniform(-0.05, 0.05, 3)),
      sky_horizon=f32(horizon + rng.uniform(-0.04, 0.04, 3)),
      sun_dir=f32([np.cos(sun_el) * np.cos(sun_az), np.cos(sun_el) * np.sin(sun_az),
                   np.sin(sun_el)]),
      sun_color=f32(np.array([1.0, 0.95, 0.85]) * (1 - 0.2 * warm)),
      clouds=f32(rng.uniform(0.0, 0.8)),
      ambient=f32(rng.uniform(0.3, 0.45)),
  )


def object_state(objects: Objects, t):
  """Centre and yaw of every slot at time `t` (seconds, scalar).

  Returns:
    (center f32[N, 3], yaw f32[N]).
  """
  import jax.numpy as jnp
  arg = objects.omega * t + objects.phase
  c = (objects.center + objects.motion_u * jnp.sin(arg)[:, None]
       + objects.motion_v * jnp.cos(arg)[:, None])
  c = c.at[:, 2].add(objects.bounce * jnp.abs(jnp.sin(objects.bounce_omega * t)))
  return c, objects.yaw + objects.spin * t

"""Vectorised ray casting of a `Scene`: RGB, z-depth and the static-region mask.

One jitted function renders a fixed-size chunk of frames (vmapped); `render`
feeds it chunks of `frames_per_chunk` frames (padding the last), so there is
one compilation per (height, width, chunk) whatever the clip length. Every
pixel casts one primary ray and, where it hits a surface, one shadow ray
towards the sun (textures and sky: shading.py). Shading is Lambertian
with a directional sun plus ambient light, so a surface point has the same
colour from every camera at a given time (the property the geometry tests
check). Textures far away fade to their mean colour (a cheap mip-map, the
only view-dependent term; `pixel_angle=0` turns it off), and the ground fades
into the horizon haze by its distance from the world origin (not from the
camera, so it stays view-independent).

Pixel convention: pixel (row i, column j) is the ray through image point
(u, v) = (j + 0.5, i + 0.5), i.e. pixel centres sit at half-integers and a
centred principal point is (W/2, H/2).

Static mask: True where the primary ray hits the sky, the ground or a static
object *and* the point is not in the shadow of a moving object, i.e. where
the colour depends on the camera only and not on scene time.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from realcam_jax.data import shading
from realcam_jax.data.scene import BOX, CYLINDER, SPHERE, Scene, object_state

PIXEL_CENTER = 0.5
_EPS = 1e-4
_INF = jnp.inf


# ----------------------------------------------------------------------------- intersections
# Rays are vectors (tuples) of f32[R]; object slots go on the major axis
# ([N, R]) so that reductions over slots are elementwise over rays.
# Each hit function maps rays (o, d: vectors of f32[R]; d need not be unit)
# and a group of slots (centre, yaw, size as f32[Nk, 1] columns at the current
# time) to f32[Nk, R]: the smallest ray parameter t > eps on each surface,
# inf on a miss.
def _hit_sphere(o, d, c, cos_yaw, sin_yaw, size):
  del cos_yaw, sin_yaw
  oc = (o[0] - c[0], o[1] - c[1], o[2] - c[2])
  a = shading.dot(d, d)
  b = shading.dot(oc, d)
  cc = shading.dot(oc, oc) - size[0] * size[0]
  disc = b * b - a * cc
  t = (-b - jnp.sqrt(jnp.maximum(disc, 0.0))) / a
  return jnp.where((disc >= 0) & (t > _EPS), t, _INF)


def _to_local(v, cos_yaw, sin_yaw):
  """Rotates world-axis vector components by -yaw about z."""
  return (cos_yaw * v[0] + sin_yaw * v[1], -sin_yaw * v[0] + cos_yaw * v[1], v[2])


def _from_local(v, cos_yaw, sin_yaw):
  return (cos_yaw * v[0] - sin_yaw * v[1], sin_yaw * v[0] + cos_yaw * v[1], v[2])


def _hit_box(o, d, c, cos_yaw, sin_yaw, size):
  ol = _to_local((o[0] - c[0], o[1] - c[1], o[2] - c[2]), cos_yaw, sin_yaw)
  dl = _to_local(d, cos_yaw, sin_yaw)
  tmin, tmax = -_INF, _INF
  for i in range(3):
    inv = 1.0 / jnp.where(jnp.abs(dl[i]) < 1e-12, 1e-12, dl[i])
    t1, t2 = (-size[i] - ol[i]) * inv, (size[i] - ol[i]) * inv
    tmin = jnp.maximum(tmin, jnp.minimum(t1, t2))
    tmax = jnp.minimum(tmax, jnp.maximum(t1, t2))
  return jnp.where((tmax >= tmin) & (tmin > _EPS), tmin, _INF)


def _hit_cylinder(o, d, c, cos_yaw, sin_yaw, size):
  del cos_yaw, sin_yaw  # symmetric about its (vertical) axis
  ox, oy, oz = o[0] - c[0], o[1] - c[1], o[2] - c[2]
  dx, dy, dz = d
  r, h = size[0], size[2]
  a = jnp.maximum(dx * dx + dy * dy, 1e-12)
  b = ox * dx + oy * dy
  cc = ox * ox + oy * oy - r * r
  disc = b * b - a * cc
  ts = (-b - jnp.sqrt(jnp.maximum(disc, 0.0))) / a
  side = jnp.where((disc >= 0) & (ts > _EPS) & (jnp.abs(oz + ts * dz) <= h), ts, _INF)
  # A ray from outside enters through the cap facing its origin (if any).
  tc = (jnp.sign(oz) * h - oz) / jnp.where(jnp.abs(dz) < 1e-12, 1e-12, dz)
  xc, yc = ox + tc * dx, oy + tc * dy
  cap = jnp.where((tc > _EPS) & (jnp.abs(oz) > h) & (xc * xc + yc * yc <= r * r), tc, _INF)
  return jnp.minimum(side, cap)


_HIT = {SPHERE: _hit_sphere, BOX: _hit_box, CYLINDER: _hit_cylinder}


def _groups(scene: Scene, time):
  """Object groups at `time`: [(kind, state dict of f32[Nk, 1] columns)] in KINDS
  order (empty groups skipped), and a property table f32[N, 18] (rows: slots)
  for selecting the hit slot's properties."""
  out, rows = [], []
  for kind, group in enumerate((scene.spheres, scene.boxes, scene.cylinders)):
    if group.kind.shape[0] == 0:
      continue
    center, yaw = object_state(group, time)
    cos_yaw, sin_yaw = jnp.cos(yaw), jnp.sin(yaw)
    col = lambda a: a[:, None]
    out.append((kind, dict(
        c=tuple(col(center[:, i]) for i in range(3)), cos_yaw=col(cos_yaw),
        sin_yaw=col(sin_yaw), size=tuple(col(group.size[:, i]) for i in range(3)),
        active=col(group.active), moving=col(group.moving))))
    rows.append(jnp.concatenate([
        center, cos_yaw[:, None], sin_yaw[:, None], group.size, group.color_a, group.color_b,
        group.pattern_scale[:, None], group.kind[:, None].astype(jnp.float32),
        group.pattern[:, None].astype(jnp.float32),
        group.moving[:, None].astype(jnp.float32)], axis=1))
  return out, jnp.concatenate(rows, axis=0)


# Columns of the property table built by `_groups`.
_PROPS = dict(c=(0, 3), cos_yaw=3, sin_yaw=4, size=(5, 8), color_a=(8, 11), color_b=(11, 14),
              scale=14, kind=15, pattern=16, moving=17)


def _hit_groups(groups, o, d):
  """t f32[N, R] for every slot (rays on the minor axis; o, d: vectors of f32[R])."""
  ts = []
  for kind, g in groups:
    t = _HIT[kind](o, d, g["c"], g["cos_yaw"], g["sin_yaw"], g["size"])
    ts.append(jnp.where(g["active"], t, _INF))
  return jnp.concatenate(ts, axis=0)


def _local_normal(kind, xl, size):
  """Object-frame unit normal at object-frame surface points xl (vectors of [R]).

  kind, size: per-ray i32[R] and a vector of f32[R].
  """
  zero = jnp.zeros_like(xl[0])
  q = tuple(x / s for x, s in zip(xl, size))
  aq = tuple(jnp.abs(x) for x in q)
  on_x = (aq[0] >= aq[1]) & (aq[0] >= aq[2])
  on_y = ~on_x & (aq[1] >= aq[2])
  box = (jnp.where(on_x, jnp.sign(q[0]), zero), jnp.where(on_y, jnp.sign(q[1]), zero),
         jnp.where(on_x | on_y, zero, jnp.sign(q[2])))
  cap = aq[2] > jnp.sqrt(q[0] * q[0] + q[1] * q[1])
  cyl = (jnp.where(cap, zero, q[0]), jnp.where(cap, zero, q[1]),
         jnp.where(cap, jnp.sign(q[2]), zero))
  n = tuple(jnp.where(kind == SPHERE, s, jnp.where(kind == BOX, b, c))
            for s, b, c in zip(q, box, cyl))
  inv = jax.lax.rsqrt(jnp.maximum(shading.dot(n, n), 1e-24))
  return tuple(x * inv for x in n)


def _trace(scene: Scene, o, d, time, pixel_angle):
  """`trace` on vectors of f32[R]; returns (rgb vector, t, static, object)."""
  groups, table = _groups(scene, time)
  # Primary ray: ground (row 0) and every slot; rays on the minor axis.
  t_ground = jnp.where((d[2] < 0) & (o[2] > 0), -o[2] / jnp.minimum(d[2], -1e-12), _INF)
  t_all = jnp.concatenate([t_ground[None], _hit_groups(groups, o, d)], axis=0)
  idx = jnp.argmin(t_all, axis=0)
  t = jnp.min(t_all, axis=0)
  onehot = (idx[None, :] == jnp.arange(1, t_all.shape[0])[:, None]).astype(jnp.float32)
  sel = jnp.einsum("nr,nf->fr", onehot, table)        # hit slot's properties, [18, R]
  best = {}
  for key, col in _PROPS.items():
    best[key] = tuple(sel[j] for j in range(*col)) if isinstance(col, tuple) else sel[col]
  best["kind"] = jnp.round(best["kind"]).astype(jnp.int32)
  best["pattern"] = jnp.round(best["pattern"]).astype(jnp.int32)
  best["moving"] = best["moving"] > 0.5
  sky = ~jnp.isfinite(t)
  is_ground = idx == 0
  t_safe = jnp.where(sky, 1.0, t)
  x = tuple(oi + t_safe * di for oi, di in zip(o, d))
  cy, sy = best["cos_yaw"], best["sin_yaw"]
  xl = _to_local(tuple(xi - ci for xi, ci in zip(x, best["c"])), cy, sy)
  n_obj = _from_local(_local_normal(best["kind"], xl, best["size"]), cy, sy)
  n = (jnp.where(is_ground, 0.0, n_obj[0]), jnp.where(is_ground, 0.0, n_obj[1]),
       jnp.where(is_ground, 1.0, n_obj[2]))
  d_len = jnp.sqrt(shading.dot(d, d))
  dist = t_safe * d_len
  cos_view = jnp.abs(shading.dot(n, d)) / d_len
  footprint = dist * pixel_angle / jnp.maximum(cos_view, 0.15)
  g_alb = shading.ground_albedo(scene, x, footprint)
  o_alb = shading.object_albedo(best["pattern"], best["scale"], best["color_a"],
                                best["color_b"], xl, footprint)
  albedo = tuple(jnp.where(is_ground, g, ob) for g, ob in zip(g_alb, o_alb))

  # Shadow ray towards the sun (objects only; the ground cannot occlude).
  offset = 1e-3 + 1e-4 * dist
  xs = tuple(xi + ni * offset for xi, ni in zip(x, n))
  sun = shading.vec3(scene.sun_dir)
  sun_d = tuple(jnp.broadcast_to(s, t.shape) for s in sun)
  blocked = jnp.isfinite(_hit_groups(groups, xs, sun_d))
  moving = jnp.concatenate([g["moving"] for _, g in groups], axis=0)
  shadow = jnp.any(blocked, axis=0)
  moving_shadow = jnp.any(blocked & moving, axis=0)
  lambert = jnp.where(shadow, 0.0, jnp.maximum(shading.dot(n, sun), 0.0))
  light = tuple(scene.ambient * (0.6 * z + 0.4) + (1 - scene.ambient) * sc * lambert
                for z, sc in zip(shading.vec3(scene.sky_zenith), shading.vec3(scene.sun_color)))
  surf = tuple(a * li for a, li in zip(albedo, light))
  haze = shading.smoothstep(scene.haze_range[0], scene.haze_range[1],
                     jnp.sqrt(x[0] * x[0] + x[1] * x[1]))
  surf = shading.lerp(surf, shading.vec3(scene.sky_horizon), haze)
  sky_rgb = shading.sky(scene, d)
  rgb = tuple(jnp.clip(jnp.where(sky, s, c), 0.0, 1.0) for s, c in zip(sky_rgb, surf))
  static = sky | (~moving_shadow & (is_ground | ~best["moving"]))
  return rgb, t, static, jnp.where(sky, -1, idx)


@jax.jit
def trace(scene: Scene, origins, dirs, time, pixel_angle=0.0):
  """Traces rays through the scene at one instant (jitted; compiles per ray count R).

  Args:
    scene: the world.
    origins: f32[R, 3] ray origins (world, metres).
    dirs: f32[R, 3] ray directions (world; need not be unit).
    time: scalar scene time in seconds.
    pixel_angle: angular size of a pixel (1 / focal length in pixels) for the
      texture fade; 0 disables it.

  Returns:
    dict(rgb f32[R, 3] in [0, 1], t f32[R] ray parameter of the first hit
    (inf for sky), static bool[R] (see module docstring), object i32[R]
    (-1 sky, 0 ground, 1 + slot index with slots in KINDS order)).
  """
  o = tuple(origins[:, i] for i in range(3))
  d = tuple(dirs[:, i] for i in range(3))
  rgb, t, static, obj = _trace(scene, o, d, time, pixel_angle)
  return dict(rgb=jnp.stack(rgb, -1), t=t, static=static, object=obj)


def _pack(rgb, static):
  """Channels in [0, 1] and a mask -> one u32 per ray (bytes r, g, b, mask).

  Writing the three channels as separate outputs (or stacking them) makes XLA
  on CPU re-evaluate the shared shading expression per channel; one packed
  output keeps a single fused loop (about 4x faster).
  """
  q = [jnp.round(c * 255.0).astype(jnp.uint32) for c in rgb]
  return q[0] | (q[1] << 8) | (q[2] << 16) | (static.astype(jnp.uint32) << 24)


def camera_rays(c2w, K, height: int, width: int):
  """Rays of every pixel of one camera.

  Args:
    c2w: f32[4, 4] camera-to-world (OpenCV axes).
    K: f32[3, 3] intrinsics (zero skew).
    height, width: image size in pixels.

  Returns:
    (origins f32[H*W, 3], dirs f32[H*W, 3]) with dirs scaled so that their
    camera-z component is 1: the ray parameter of a hit is its z-depth.
  """
  j, i = jnp.meshgrid(jnp.arange(width, dtype=jnp.float32),
                      jnp.arange(height, dtype=jnp.float32))
  x = (j.reshape(-1) + PIXEL_CENTER - K[0, 2]) / K[0, 0]
  y = (i.reshape(-1) + PIXEL_CENTER - K[1, 2]) / K[1, 1]
  d_cam = jnp.stack([x, y, jnp.ones_like(x)], -1)
  dirs = d_cam @ c2w[:3, :3].T
  return jnp.broadcast_to(c2w[:3, 3], dirs.shape), dirs


@functools.partial(jax.jit, static_argnames=("height", "width"))
def _render_chunk(scene, c2w, K, times, *, height, width):
  """Renders F frames: c2w f32[F,4,4], K f32[F,3,3], times f32[F]."""
  def one(pose, k, time):
    o, d = camera_rays(pose, k, height, width)
    rgb, t, static, _ = _trace(scene, tuple(o[:, i] for i in range(3)),
                               tuple(d[:, i] for i in range(3)), time, 1.0 / k[0, 0])
    packed = jax.lax.bitcast_convert_type(_pack(rgb, static), jnp.uint8)  # [R, 4] little-endian
    packed = packed.reshape(height, width, 4)
    return packed[..., :3], t.reshape(height, width), packed[..., 3] > 0

  return jax.vmap(one)(c2w, K, times)


def _as_array(name, x, shape_desc, ndim_ok):
  a = np.asarray(x, np.float32)
  if not ndim_ok(a.shape):
    raise ValueError(f"render: {name} has shape {a.shape}; expected {shape_desc}")
  if not np.all(np.isfinite(a)):
    raise ValueError(f"render: {name} contains NaN or inf")
  return a


def render(scene: Scene, c2w, K, times, height: int, width: int, *,
           frames_per_chunk: int = 8) -> dict:
  """Renders N frames of a scene.

  Args:
    scene: from `make_scene`.
    c2w: f32[N, 4, 4] camera-to-world poses (OpenCV axes, metres, world z up).
    K: f32[3, 3] shared intrinsics or f32[N, 3, 3] per frame (pixels).
    times: f32[N] scene time of each frame (seconds).
    height, width: output size in pixels (>= 1).
    frames_per_chunk: frames rendered together (memory vs speed).

  Returns:
    dict of numpy arrays: rgb u8[N, H, W, 3], depth f32[N, H, W] (z-depth
    along the camera axis, inf for sky), static_mask bool[N, H, W].
  """
  for name, v in (("height", height), ("width", width)):
    if not isinstance(v, (int, np.integer)) or v < 1:
      raise ValueError(f"render: {name}={v!r}; expected a positive int")
  c2w = _as_array("c2w", c2w, "[N, 4, 4]", lambda s: len(s) == 3 and s[1:] == (4, 4))
  n = c2w.shape[0]
  if n < 1:
    raise ValueError("render: c2w has no frames; expected [N, 4, 4] with N >= 1")
  K = _as_array("K", K, "[3, 3] or [N, 3, 3]",
                lambda s: s == (3, 3) or s == (n, 3, 3))
  if K.ndim == 2:
    K = np.broadcast_to(K, (n, 3, 3))
  if np.any(K[:, 0, 0] <= 0) or np.any(K[:, 1, 1] <= 0):
    raise ValueError("render: K has a non-positive focal length")
  times = _as_array("times", times, f"[{n}]", lambda s: s == (n,))
  if not isinstance(frames_per_chunk, (int, np.integer)) or frames_per_chunk < 1:
    raise ValueError(f"render: frames_per_chunk={frames_per_chunk!r}; expected an int >= 1")
  f = int(frames_per_chunk)  # fixed chunk size: one compilation for every clip length
  pad = -n % f
  if pad:  # repeat the last frame so every chunk has the compiled size
    c2w, K, times = (np.concatenate([a, np.repeat(a[-1:], pad, 0)]) for a in (c2w, K, times))
  scene = jax.device_put(scene)
  chunks = [_render_chunk(scene, c2w[i:i + f], K[i:i + f], times[i:i + f], height=int(height),
                          width=int(width)) for i in range(0, n + pad, f)]
  rgb, depth, static = (np.concatenate([np.asarray(c[j]) for c in chunks])[:n] for j in range(3))
  return dict(rgb=rgb, depth=depth, static_mask=static)

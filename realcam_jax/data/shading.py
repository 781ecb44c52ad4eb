"""Shading of the synthetic world: procedural textures, sky, colour helpers.

Everything is elementwise over rays. Vectors (points, normals, colours) are
tuples of three same-shaped arrays (structure of arrays): XLA on CPU
vectorises elementwise code over rays far better than reductions over a minor
axis of size 3. All colours are display RGB in [0, 1].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from realcam_jax.data.scene import Scene

# ----------------------------------------------------------------------------- helpers
def lattice_hash(ix, iy, seed):
  """Integer lattice hash -> uniform float in [0, 1). ix, iy: i32[...]."""
  h = (ix.astype(jnp.uint32) * jnp.uint32(0x8DA6B343)) ^ (iy.astype(jnp.uint32)
                                                            * jnp.uint32(0xD8163841))
  h = h ^ seed.astype(jnp.uint32)
  h = (h ^ (h >> 13)) * jnp.uint32(0x85EBCA6B)
  h = (h ^ (h >> 16)) * jnp.uint32(0xC2B2AE35)
  h = h ^ (h >> 15)
  return (h >> 8).astype(jnp.float32) * (1.0 / (1 << 24))


def value_noise(x, y, seed):
  """Smooth 2D value noise in [0, 1). x, y: f32[...]."""
  fx, fy = jnp.floor(x), jnp.floor(y)
  ix, iy = fx.astype(jnp.int32), fy.astype(jnp.int32)
  sx, sy = x - fx, y - fy
  sx, sy = sx * sx * (3 - 2 * sx), sy * sy * (3 - 2 * sy)
  a, b = lattice_hash(ix, iy, seed), lattice_hash(ix + 1, iy, seed)
  c, d = lattice_hash(ix, iy + 1, seed), lattice_hash(ix + 1, iy + 1, seed)
  return (a + (b - a) * sx) + ((c + (d - c) * sx) - (a + (b - a) * sx)) * sy


def smoothstep(a, b, x):
  s = jnp.clip((x - a) / (b - a), 0.0, 1.0)
  return s * s * (3 - 2 * s)


def dot(a, b):
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def lerp(a, b, w):
  return tuple(x + (y - x) * w for x, y in zip(a, b))


def vec3(v):
  """f32[3] -> tuple of three scalars."""
  return (v[0], v[1], v[2])


# ----------------------------------------------------------------------------- shading
def sky(scene: Scene, d):
  inv = jax.lax.rsqrt(dot(d, d))
  dn = tuple(x * inv for x in d)
  e = dn[2]
  base = lerp(vec3(scene.sky_horizon), vec3(scene.sky_zenith), jnp.sqrt(jnp.clip(e, 0.0, 1.0)))
  cos_sun = dot(dn, vec3(scene.sun_dir))
  glow = jnp.exp((cos_sun - 1.0) * 2000.0) * 2.0 + jnp.exp((cos_sun - 1.0) * 25.0) * 0.25
  k = 0.8 / jnp.maximum(e, 0.05)
  px, py = dn[0] * k, dn[1] * k
  n = (value_noise(px, py, scene.ground_seed + 7) * 0.65
       + value_noise(px * 2.7, py * 2.7, scene.ground_seed + 8) * 0.35)
  cloud = smoothstep(1.0 - scene.clouds * 0.6, 1.05 - scene.clouds * 0.3, n) * smoothstep(
      0.02, 0.25, e)
  color = tuple(b + s * glow for b, s in zip(base, vec3(scene.sun_color)))
  return lerp(color, (0.95, 0.95, 0.97), 0.85 * cloud)


def fade(pattern, footprint, cell):
  """Fades a {0,1} pattern to its mean where a pixel covers much of a cell."""
  c = jnp.clip(1.5 - 2.0 * footprint / cell, 0.0, 1.0)
  return 0.5 + (pattern - 0.5) * c


def ground_albedo(scene: Scene, x, footprint):
  cell = scene.ground_cell
  ix = jnp.floor(jnp.clip(x[0] / cell, -1e6, 1e6)).astype(jnp.int32)
  iy = jnp.floor(jnp.clip(x[1] / cell, -1e6, 1e6)).astype(jnp.int32)
  checker = fade(((ix + iy) & 1).astype(jnp.float32), footprint, cell)
  jitter = 1.0 + scene.ground_jitter * (
      2.0 * fade(lattice_hash(ix, iy, scene.ground_seed), footprint, cell) - 1.0)
  col = lerp(vec3(scene.ground_colors[0]), vec3(scene.ground_colors[1]), checker)
  patches = smoothstep(0.45, 0.75, value_noise(x[0] / scene.ground_noise,
                                                 x[1] / scene.ground_noise, scene.ground_seed + 1))
  col = lerp(col, vec3(scene.ground_tint), 0.6 * patches)
  return tuple(ch * jitter for ch in col)


def object_albedo(pattern, scale, color_a, color_b, xl, footprint):
  """Albedo of object-frame points xl from per-ray texture params ([R] each)."""
  q = tuple(jnp.floor(jnp.clip(x / scale, -1e6, 1e6)).astype(jnp.int32) for x in xl)
  checker = ((q[0] + q[1] + q[2]) & 1).astype(jnp.float32)
  m = jnp.where(pattern == 1, checker,
                jnp.where(pattern == 2, q[2] & 1, q[0] & 1).astype(jnp.float32))
  m = jnp.where(pattern == 0, 0.0, fade(m, footprint, scale))
  return lerp(color_a, color_b, m)

"""The source frames seen from the target camera through a plane: geometry, no model.

A scene point on the plane `z = depth` of the source camera (fronto-parallel, OpenCV
axes) appears in the target camera where the plane-induced homography puts it. Warping
each source frame by it gives the target view exactly for a camera rotation (any depth)
and approximately for a translation (exact only on the plane). With the identity camera
it is the source itself. `realcam eval`'s `warp_source` system is this warp; a model
can use it as the base its prediction corrects (`model.prediction = warped_source`).

Inverse warp: target pixel centre (u, v) -> ray K^-1 (u, v, 1) in the target camera ->
source-camera coordinates through `rel = inv(source_c2w) @ target_c2w` -> hit the plane
-> project with K -> bilinear sample (edge-clamped). Pixels whose ray misses the plane
(hits it behind the source camera or at grazing angles) or whose source point lies
outside the frame are reported invalid.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def plane_sample_coords(rel, K, height: int, width: int, depth: float):
  """Where each target pixel samples the source, through the plane `z = depth`.

  Args:
    rel: f32[..., 4, 4] target camera -> source camera transform (`inv(S) @ T` for
      camera-to-world S, T).
    K: f32[3, 3] (or [..., 3, 3]) pixel intrinsics of both cameras at height x width.
    height, width: frame size in pixels.
    depth: plane distance from the source camera (> 0, scene units).

  Returns:
    (x f32[..., H, W], y f32[..., H, W], valid bool[..., H, W]) continuous source pixel
    coordinates (pixel centres at +0.5, `camera/intrinsics.py`) and the mask of target
    pixels that see the plane inside the source frame.
  """
  if depth <= 0:
    raise ValueError(f"plane depth must be > 0, got {depth}")
  rel = jnp.asarray(rel, jnp.float32)
  K = jnp.asarray(K, jnp.float32)
  u = jnp.arange(width, dtype=jnp.float32) + 0.5
  v = jnp.arange(height, dtype=jnp.float32) + 0.5
  uu, vv = jnp.meshgrid(u, v)                                             # [H, W]
  pix = jnp.stack([uu, vv, jnp.ones_like(uu)], -1)                        # [H, W, 3]
  k_inv = jnp.linalg.inv(K)
  rays = jnp.einsum("...ij,hwj->...hwi", k_inv, pix)                      # target camera
  rot, centre = rel[..., :3, :3], rel[..., :3, 3]
  dirs = jnp.einsum("...ij,...hwj->...hwi", rot, rays)                    # source camera
  origin = centre[..., None, None, :]
  dz = dirs[..., 2]
  safe = jnp.where(jnp.abs(dz) > 1e-6, dz, 1e-6)
  lam = (depth - origin[..., 2]) / safe
  points = origin + lam[..., None] * dirs                                 # on the plane
  proj = jnp.einsum("...ij,...hwj->...hwi", K, points)
  x, y = proj[..., 0] / proj[..., 2], proj[..., 1] / proj[..., 2]
  valid = ((jnp.abs(dz) > 1e-6) & (lam > 0) & (x >= 0) & (x <= width)
           & (y >= 0) & (y <= height))
  return x, y, valid


def bilinear_sample(image, x, y):
  """image f32[..., H, W, C] sampled at continuous pixel coords x, y [..., h, w] (centres
  at +0.5), edge-clamped -> f32[..., h, w, C]."""
  height, width = image.shape[-3], image.shape[-2]
  px = jnp.clip(x - 0.5, 0.0, width - 1.0)
  py = jnp.clip(y - 0.5, 0.0, height - 1.0)
  x0 = jnp.floor(px).astype(jnp.int32)
  y0 = jnp.floor(py).astype(jnp.int32)
  x1 = jnp.minimum(x0 + 1, width - 1)
  y1 = jnp.minimum(y0 + 1, height - 1)
  wx = (px - x0)[..., None]
  wy = (py - y0)[..., None]
  lead = image.shape[:-3]
  flat = image.reshape((-1, height * width, image.shape[-1]))

  def gather(yi, xi):
    idx = (yi * width + xi).reshape((flat.shape[0], -1))
    out = jnp.take_along_axis(flat, idx[..., None], axis=1)
    return out.reshape(lead + x.shape[len(lead):] + (image.shape[-1],))

  top = gather(y0, x0) * (1 - wx) + gather(y0, x1) * wx
  bottom = gather(y1, x0) * (1 - wx) + gather(y1, x1) * wx
  return top * (1 - wy) + bottom * wy


def plane_warp(frames, rel, K, depth: float):
  """Each source frame seen from its target camera through the plane `z = depth`.

  Args:
    frames: f32[T, H, W, C] source frames (any value range; u8 is cast).
    rel: f32[T, 4, 4] target -> source camera transform per frame.
    K: f32[3, 3] pixel intrinsics at H x W.
    depth: plane distance from the source camera.

  Returns:
    (warped f32[T, H, W, C], valid bool[T, H, W]); invalid pixels hold the nearest
    edge pixel's value.
  """
  frames = jnp.asarray(frames, jnp.float32)
  t, h, w = frames.shape[:3]
  rel = jnp.asarray(rel, jnp.float32)
  if rel.shape != (t, 4, 4):
    raise ValueError(f"rel has shape {rel.shape}; expected ({t}, 4, 4) for {t} frames")
  x, y, valid = plane_sample_coords(rel, K, h, w, depth)
  return bilinear_sample(frames, x, y), valid


def pixel_frame_poses(latent_poses, num_frames: int, temporal_factor: int = 4):
  """f[T, 4, 4] poses of every pixel frame from one per latent frame (latent frame j sits
  at pixel frame `temporal_factor * j`, `eval/cases.py`): slerp / linear in between,
  the last latent pose held past the end."""
  from realcam_jax.camera.interp import interpolate_poses
  latent_poses = np.asarray(latent_poses, np.float64)
  keys = np.arange(len(latent_poses), dtype=np.float64) * temporal_factor
  return interpolate_poses(latent_poses, keys, np.arange(num_frames, dtype=np.float64))


def warp_source_video(source, latent_poses, source_latent_poses, K, depth: float,
                      temporal_factor: int = 4):
  """The source video seen from the target camera through the plane `z = depth`.

  Args:
    source: u8[T, H, W, 3] source video.
    latent_poses: f[F, 4, 4] target poses per latent frame (any common reference).
    source_latent_poses: f[F, 4, 4] the source camera's, same reference; None: the
      target poses are already offsets from the moving source camera.
    K: f[3, 3] pixel intrinsics.
    depth: plane distance from the source camera.
    temporal_factor: pixel frames per latent frame.

  Returns:
    u8[T, H, W, 3].
  """
  from realcam_jax.camera.pose import invert_pose
  source = np.asarray(source)
  t = source.shape[0]
  target = pixel_frame_poses(latent_poses, t, temporal_factor)
  rel = target if source_latent_poses is None else (
      invert_pose(pixel_frame_poses(source_latent_poses, t, temporal_factor)) @ target)
  out, _ = plane_warp(source, rel, K, depth)
  return np.clip(np.round(np.asarray(out)), 0, 255).astype(np.uint8)

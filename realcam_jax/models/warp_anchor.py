"""The anchor of `model.prediction = "warped_source"`: source latents seen from the target.

Each source latent frame is warped to its target camera through the plane `z =
model.warp_depth` of the source camera (`camera/warp.py`, at latent resolution: pixel
intrinsics scaled by 1 / spatial_factor). The network predicts a residual on it, so a
fresh model (zero-initialised head) already re-renders a camera rotation exactly and
a translation as if the scene were that plane; at the identity camera the anchor is the
source itself (what `source_residual` anchors on everywhere).

Poses follow `camera_features`: target c2w relative to the source's first frame and the
source camera's own poses in the same frame; with `source_poses=None` the poses are
already offsets from the moving source camera (a real video whose camera is unknown).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from realcam_jax.camera import intrinsics as intr
from realcam_jax.camera import pose as cpose
from realcam_jax.camera import warp

DEFAULT_WARP_DEPTH = 8.0     # the demo rig's subject distance (data/rig.py: 6-9.5 m)


def warped_source(cfg, source, poses, K, spatial_factor: int, source_poses=None):
  """Source latents warped to the target cameras.

  Args:
    cfg: model config (`warp_depth`).
    source: f32[B, F, h, w, C] source latents.
    poses: f32[B, F, 4, 4] target poses per latent frame (see the module docstring).
    K: f32[B, 3, 3] pixel intrinsics.
    spatial_factor: the VAE's spatial factor (latent pixel = that many pixels).
    source_poses: f32[B, F, 4, 4] or None.

  Returns:
    f32[B, F, h, w, C] in source's dtype.
  """
  poses = jnp.asarray(poses, jnp.float32)
  b, f, h, w = source.shape[:4]
  if poses.shape != (b, f, 4, 4):
    raise ValueError(f"target poses {poses.shape} must be [B={b}, F={f}, 4, 4] to warp "
                     f"source latents {source.shape}")
  rel = poses if source_poses is None else cpose.relative_poses(
      poses, "pair", jnp.asarray(source_poses, jnp.float32))
  k_lat = intr.scale_intrinsics(jnp.asarray(K, jnp.float32), 1.0 / spatial_factor)
  depth = float(cfg.get("warp_depth", DEFAULT_WARP_DEPTH))
  out = jax.vmap(lambda s, r, k: warp.plane_warp(s, r, k, depth)[0])(
      source.astype(jnp.float32), rel, k_lat)
  return out.astype(source.dtype)


def anchor_for(cfg, source, poses, K, spatial_factor: int, source_poses=None):
  """The model's anchor: `warped_source(...)` for `prediction = "warped_source"`, else None
  (the other predictions take no anchor)."""
  if cfg.get("prediction") != "warped_source":
    return None
  return warped_source(cfg, source, poses, K, spatial_factor, source_poses)


def batch_anchor(cfg, batch: dict, spatial_factor: int):
  """The model's anchor for a training batch: `batch_warped_source` for
  `prediction = "warped_source"`, else None."""
  if cfg.get("prediction") != "warped_source":
    return None
  return batch_warped_source(cfg, batch, spatial_factor)


def batch_warped_source(cfg, batch: dict, spatial_factor: int):
  """`warped_source` of a training batch (source_latents, target_poses, intrinsics,
  source_poses: required, as for the pair camera reference)."""
  if batch.get("source_poses") is None:
    raise ValueError("model.prediction='warped_source' needs the batch's source_poses; this "
                     f"data source gives only {sorted(batch)} (use latent records, "
                     "data.source='latents')")
  return warped_source(cfg, batch["source_latents"], batch["target_poses"], batch["intrinsics"],
                       spatial_factor, batch["source_poses"])

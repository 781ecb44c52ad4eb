"""Camera features the network consumes, from relative target poses.

`camera_features(cfg, poses, K, latent_hw, spatial_factor, source_poses=None)`:

The poses are target c2w relative to the source camera's first frame (the data's and
the sessions' convention). `cfg.camera_reference` picks what the network sees:
  source_first  those poses (ReCamMaster's convention; the default).
  pair          each target frame relative to the source camera at the same latent frame,
                inv(source_pose[f]) @ pose[f] (design.md §3): the identity camera becomes
                the identity matrix at every frame, whatever the source camera does. Needs
                `source_poses` (same convention); where they are unknown (a real video),
                pass `source_poses=None` and give `poses` already as offsets from the
                moving source camera.

  pose12   [B, F, 12]: flattened 3x4 [R|t] of each target latent frame's pose
           relative to the reference (`model.camera_reference`, above).
  plucker  [B, F, P, 6 * ph * pw]: Plücker rays at latent resolution (one ray per
           latent pixel, intrinsics scaled by 1 / spatial_factor), patchified like
           the latents.
  none     None.
"""

from __future__ import annotations

import jax.numpy as jnp

from realcam_jax.camera import intrinsics as intr
from realcam_jax.camera import plucker as pl
from realcam_jax.camera import pose as cpose


CAMERA_REFERENCES = ("source_first", "pair")


def model_poses(cfg, poses, source_poses=None):
  """The poses the network is conditioned on (see the module docstring)."""
  ref = cfg.get("camera_reference", "source_first")
  if ref not in CAMERA_REFERENCES:
    raise ValueError(f"model.camera_reference={ref!r}: expected one of {CAMERA_REFERENCES}")
  poses = jnp.asarray(poses, jnp.float32)
  if ref == "source_first" or source_poses is None:
    return poses
  source_poses = jnp.asarray(source_poses, jnp.float32)
  if source_poses.shape != poses.shape:
    raise ValueError(f"source poses {source_poses.shape} must match the target poses "
                     f"{poses.shape} (one per latent frame)")
  return cpose.relative_poses(poses, "pair", source_poses)


def camera_features(cfg, poses, K, latent_hw: tuple[int, int], spatial_factor: int,
                    source_poses=None):
  """poses f32[B, F, 4, 4] (relative c2w), K f32[B, 3, 3] (pixel intrinsics) -> features."""
  enc = cfg.camera_encoding
  if enc == "none":
    return None
  poses = jnp.asarray(poses, jnp.float32)
  if poses.ndim != 4 or poses.shape[-2:] != (4, 4):
    raise ValueError(f"target poses must be [B, F, 4, 4], got {poses.shape}")
  poses = model_poses(cfg, poses, source_poses)
  if enc == "pose12":
    return cpose.pose_to_12(poses)
  if enc == "plucker":
    h, w = latent_hw
    k_lat = intr.scale_intrinsics(jnp.asarray(K, jnp.float32), 1.0 / spatial_factor)
    rays = pl.plucker_rays(poses, k_lat[:, None], h, w)                 # [B, F, h, w, 6]
    _, ph, pw = cfg.patch_size
    b, f = poses.shape[:2]
    rays = rays.reshape(b, f, h // ph, ph, w // pw, pw, 6).transpose(0, 1, 2, 4, 3, 5, 6)
    return rays.reshape(b, f, (h // ph) * (w // pw), ph * pw * 6)
  raise ValueError(f"unknown camera_encoding {enc!r}; expected pose12, plucker or none")


def batch_camera_features(cfg, batch: dict, latent_hw: tuple[int, int], spatial_factor: int):
  """`camera_features` of a training batch (target_poses, intrinsics, source_poses).

  Raises:
    ValueError: `camera_reference = "pair"` and the batch has no `source_poses` (a
      training batch always knows its source camera; silently conditioning on the
      first-frame poses instead would train the wrong model).
  """
  src = batch.get("source_poses")
  if cfg.get("camera_reference", "source_first") == "pair" and src is None:
    raise ValueError("model.camera_reference='pair' needs the batch's source_poses; this data "
                     f"source gives only {sorted(batch)} (use latent records, "
                     "data.source='latents')")
  return camera_features(cfg, batch["target_poses"], batch["intrinsics"], latent_hw,
                         spatial_factor, src)

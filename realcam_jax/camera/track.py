"""`CameraTrack` (one camera's path in our convention) and helpers shared by the file formats."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from realcam_jax.camera.validate import CameraFileError

CONVENTION = "camera-to-world, OpenCV axes (x right, y down, z forward), metres"


@dataclasses.dataclass
class CameraTrack:
  """One camera's path.

  Attributes:
    poses: [T, 4, 4] camera-to-world, OpenCV axes, metres.
    intrinsics: [T, 3, 3] normalised K (for a 1x1 image) or None.
    timestamps: [T] seconds or None.
  """
  poses: np.ndarray
  intrinsics: np.ndarray | None = None
  timestamps: np.ndarray | None = None


def orthonormalize(poses):
  """Projects the rotation blocks onto the nearest rotation (files round to ~6 digits)."""
  u, _, vt = np.linalg.svd(poses[..., :3, :3])
  out = poses.copy()
  out[..., :3, :3] = u @ vt
  return out


def load_json(path):
  """Parses a JSON camera file; empty or malformed files raise CameraFileError."""
  with open(path) as f:
    text = f.read()
  if not text.strip():
    raise CameraFileError(f"camera file {path} is empty")
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise CameraFileError(f"camera file {path} is not valid JSON: {e}") from None

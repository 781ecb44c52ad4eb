"""Validation of camera input, with errors that name file, frame and camera."""

from __future__ import annotations

import numpy as np

from realcam_jax.camera.pose import rotation_error


class CameraFileError(ValueError):
  """A camera file, trajectory name or pose array is not usable; the message says why."""


def where(source=None, camera=None, frame=None) -> str:
  """`'pose of cam03 at frame17 in FILE'`-style location text (parts optional)."""
  parts = []
  if frame is not None:
    parts.append(f"frame {frame}" if isinstance(frame, (int, np.integer)) else str(frame))
  if camera is not None:
    parts.append(f"of {camera}")
  if source is not None:
    parts.append(f"in {source}")
  return " ".join(parts)


def check_pose(matrix, source=None, camera=None, frame=None, atol=1e-4) -> np.ndarray:
  """Checks one camera-to-world matrix; returns it as float64 `[4, 4]`.

  Raises:
    CameraFileError: wrong shape, NaN/inf, a non-rotation 3x3 block, or a last
      row that is not `[0, 0, 0, 1]`.
  """
  loc = where(source, camera, frame)
  m = np.asarray(matrix, dtype=np.float64)
  if m.shape != (4, 4):
    raise CameraFileError(f"camera pose {loc}: expected a 4x4 matrix, got shape {m.shape}")
  if not np.all(np.isfinite(m)):
    raise CameraFileError(f"camera pose {loc} contains NaN or inf: {m.tolist()}")
  err = rotation_error(m[:3, :3], atol)
  if err is not None:
    raise CameraFileError(f"camera pose {loc} {err}")
  if np.abs(m[3] - np.array([0.0, 0.0, 0.0, 1.0])).max() > atol:
    raise CameraFileError(f"camera pose {loc}: expected last row [0, 0, 0, 1], got {m[3].tolist()}")
  return m


def check_poses(poses, source=None, camera=None, frame_names=None, atol=1e-4) -> np.ndarray:
  """Checks `[T, 4, 4]` camera-to-world poses; returns float64 `[T, 4, 4]`.

  Args:
    poses: array-like `[T, 4, 4]`, T >= 1.
    source: file name or preset name for messages.
    camera: camera name for messages.
    frame_names: optional `[T]` names used in messages instead of indices.
    atol: tolerance for orthonormality and the determinant.
  """
  try:
    p = np.asarray(poses, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise CameraFileError(f"camera poses {where(source, camera)}: expected numbers in a "
                          f"[T, 4, 4] array ({e})") from None
  if p.ndim != 3 or p.shape[1:] != (4, 4):
    raise CameraFileError(f"camera poses {where(source, camera)}: expected shape [T, 4, 4], "
                          f"got {p.shape}")
  if p.shape[0] == 0:
    raise CameraFileError(f"camera poses {where(source, camera)}: no frames")
  for i in range(p.shape[0]):
    check_pose(p[i], source, camera, i if frame_names is None else frame_names[i], atol)
  return p


def check_intrinsics(K, num_frames, source=None, camera=None) -> np.ndarray:
  """Checks intrinsics `[3, 3]` or `[T, 3, 3]`; returns float64 `[T, 3, 3]`."""
  k = np.asarray(K, dtype=np.float64)
  if k.shape == (3, 3):
    k = np.broadcast_to(k, (num_frames, 3, 3)).copy()
  if k.shape != (num_frames, 3, 3):
    raise CameraFileError(f"intrinsics {where(source, camera)}: expected shape [3, 3] or "
                          f"[{num_frames}, 3, 3], got {k.shape}")
  for i in range(num_frames):
    if not np.all(np.isfinite(k[i])):
      raise CameraFileError(f"intrinsics {where(source, camera, i)} contain NaN or inf")
    if k[i, 0, 0] <= 0 or k[i, 1, 1] <= 0:
      raise CameraFileError(f"intrinsics {where(source, camera, i)}: expected positive focal "
                            f"lengths, got fx={k[i, 0, 0]}, fy={k[i, 1, 1]}")
  return k

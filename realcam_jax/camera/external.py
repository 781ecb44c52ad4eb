"""External camera formats: ReCamMaster/MultiCamVideo JSON (Unreal) and RealEstate10K text."""

from __future__ import annotations

import json
import re

import numpy as np

from realcam_jax.camera.intrinsics import intrinsics_from_fov, normalize_intrinsics
from realcam_jax.camera.pose import invert_pose
from realcam_jax.camera.track import CameraTrack, load_json, orthonormalize
from realcam_jax.camera.validate import CameraFileError, check_intrinsics, check_poses

# RealEstate10K rows must carry intrinsics; tracks without them get these (normalised).
DEFAULT_FOV_DEG, DEFAULT_ASPECT = 60.0, 16.0 / 9.0
DEFAULT_FPS = 30.0

# Unreal (x forward, y right, z up) -> OpenCV (x right, y down, z forward):
# v_cv = A v_ue. det(A) = -1: it also flips Unreal's left-handed frame to a
# right-handed one. Applied on both sides (world and camera axes).
_UE_TO_CV = np.array([[0.0, 1.0, 0.0, 0.0],
                      [0.0, 0.0, -1.0, 0.0],
                      [1.0, 0.0, 0.0, 0.0],
                      [0.0, 0.0, 0.0, 1.0]])
_CM_TO_M = np.diag([0.01, 0.01, 0.01, 1.0])  # S @ c2w @ S^-1 scales only the translation


def unreal_to_opencv(matrix):
  """ReCamMaster/MultiCamVideo Unreal matrix -> our camera-to-world pose.

  The file stores `M` for row vectors in Unreal axes and centimetres:
  `[x_w, y_w, z_w, 1] = [x_c, y_c, z_c, 1] @ M`, i.e. rows 0-2 of M are the
  camera's forward/right/up axes in Unreal world coordinates and row 3 is the
  camera position (cm). Hence `c2w_ue = M.T` (column-vector form), and with
  the axis map `A` (Unreal (fwd, right, up) -> OpenCV (right, down, fwd)):

      pose = A @ M.T @ A.T,   then   pose[:3, 3] /= 100
      (as one product: S A M^T A^T S^-1 with S = diag(0.01, 0.01, 0.01, 1))

  where A = [[0,1,0],[0,0,-1],[1,0,0]] (padded to 4x4). Camera forward (Unreal
  +x) becomes our +z, right (+y) our +x, up (+z) our -y.

  Args:
    matrix: [..., 4, 4] Unreal row-vector matrices (centimetres).

  Returns:
    [..., 4, 4] camera-to-world poses (OpenCV axes, metres).
  """
  m = np.asarray(matrix, dtype=np.float64)
  return _CM_TO_M @ _UE_TO_CV @ np.swapaxes(m, -1, -2) @ _UE_TO_CV.T @ np.linalg.inv(_CM_TO_M)


def opencv_to_unreal(pose):
  """Exact inverse of `unreal_to_opencv`: `[..., 4, 4]` ours -> Unreal row-vector (cm)."""
  p = np.asarray(pose, dtype=np.float64)
  c2w_ue = _UE_TO_CV.T @ np.linalg.inv(_CM_TO_M) @ p @ _CM_TO_M @ _UE_TO_CV
  return np.swapaxes(c2w_ue, -1, -2)


# ---------------------------------------------------------------- ReCamMaster
_ROW = r"\[\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*\]"
_MATRIX = re.compile(r"\s*" + r"\s*".join([_ROW] * 4) + r"\s*")


def _parse_unreal(text, path, camera, frame):
  m = _MATRIX.fullmatch(text) if isinstance(text, str) else None
  try:
    values = np.array([float(v) for v in m.groups()]).reshape(4, 4) if m else None
  except ValueError:
    values = None
  if values is None:
    raise CameraFileError(
        f"camera pose {frame} of {camera} in {path}: expected a string of 4 bracketed rows of 4 "
        f"numbers like '[r r r 0] [r r r 0] [r r r 0] [tx ty tz 1]', got {str(text)[:80]!r}")
  if not np.all(np.isfinite(values)):
    raise CameraFileError(f"camera pose {frame} of {camera} in {path} contains NaN or inf: "
                          f"{text.strip()!r}")
  if np.abs(values[:, 3] - [0, 0, 0, 1]).max() > 1e-4:
    raise CameraFileError(f"camera pose {frame} of {camera} in {path}: expected the last column "
                          f"to be [0, 0, 0, 1] (row-vector matrix), got {values[:, 3].tolist()}")
  return values


def read_recammaster(path) -> dict[str, CameraTrack]:
  """Reads a ReCamMaster/MultiCamVideo `camera_extrinsics.json` (all cameras)."""
  data = load_json(path)
  if not isinstance(data, dict) or not data:
    raise CameraFileError(f"camera file {path}: expected an object of frames "
                          f'{{"frame0": {{"cam01": "[...] [...] [...] [...]"}}}}, got none')
  index = {}
  for key in data:
    m = re.fullmatch(r"frame(\d+)", key)
    if not m:
      raise CameraFileError(f"camera file {path}: unexpected key {key!r}; "
                            "expected frame0, frame1, ...")
    index[int(m.group(1))] = key
  for i in range(len(index)):
    if i not in index:
      raise CameraFileError(f"camera file {path}: frame{i} is missing (frames go up to "
                            f"frame{max(index)}; expected frame0..frame{max(index)} without gaps)")
  keys = [index[i] for i in range(len(index))]
  if not isinstance(data[keys[0]], dict) or not data[keys[0]]:
    raise CameraFileError(f"camera file {path}: {keys[0]} has no cameras; expected "
                          f'{{"cam01": "[...] [...] [...] [...]", ...}}')
  cameras = list(data[keys[0]])
  for key in keys:
    frame = data[key]
    if not isinstance(frame, dict):
      raise CameraFileError(f"camera file {path}: {key} must map camera names to matrix strings")
    for cam in cameras:
      if cam not in frame:
        raise CameraFileError(f"camera file {path}: camera {cam} is missing from {key} "
                              f"(it is in {keys[0]})")
    extra = [c for c in frame if c not in cameras]
    if extra:
      raise CameraFileError(f"camera file {path}: camera {extra[0]} is in {key} but missing "
                            f"from {keys[0]}")
  tracks = {}
  for cam in cameras:
    raw = np.stack([_parse_unreal(data[k][cam], path, cam, k) for k in keys])
    check_poses(np.swapaxes(raw, -1, -2), path, cam, keys)  # rotation check in file units
    tracks[cam] = CameraTrack(orthonormalize(unreal_to_opencv(raw)))
  return tracks


def _format_unreal(m):
  return "".join("[" + " ".join(f"{v:.9g}" for v in row) + "] " for row in m)


def write_recammaster(path, tracks: dict[str, CameraTrack]):
  """Writes ReCamMaster JSON (poses only: the format has no intrinsics or times)."""
  lengths = {len(t.poses) for t in tracks.values()}
  if len(lengths) != 1:
    raise CameraFileError(f"cannot write {path}: ReCamMaster files need the same number of "
                          f"frames for every camera, got {sorted(lengths)}")
  raw = {name: opencv_to_unreal(t.poses) for name, t in tracks.items()}
  data = {f"frame{i}": {name: _format_unreal(m[i]) for name, m in raw.items()}
          for i in range(lengths.pop())}
  with open(path, "w") as f:
    json.dump(data, f, indent=4)


# -------------------------------------------------------------- RealEstate10K
def read_realestate10k(path) -> dict[str, CameraTrack]:
  """Reads a RealEstate10K pose file (URL line, then `t fx fy cx cy k1 k2 w2c[12]` rows)."""
  with open(path) as f:
    lines = [ln.strip() for ln in f]
  lines = [ln for ln in lines if ln]
  if not lines:
    raise CameraFileError(f"camera file {path} is empty")
  rows = []
  for lineno, line in enumerate(lines[1:], start=2):
    parts = line.split()
    try:
      values = [float(v) for v in parts]
    except ValueError:
      values = []
    if len(values) != 19:
      raise CameraFileError(
          f"camera file {path}, line {lineno} (frame {lineno - 2}): expected 19 numbers "
          f"(timestamp fx fy cx cy 0 0 and a 3x4 world-to-camera matrix), got {line[:80]!r}")
    if not np.all(np.isfinite(values)):
      raise CameraFileError(f"camera pose frame {lineno - 2} of the camera in {path} (line "
                            f"{lineno}) contains NaN or inf")
    rows.append(values)
  if not rows:
    raise CameraFileError(f"camera file {path} has a URL line but no pose rows")
  rows = np.array(rows)
  w2c = np.concatenate([rows[:, 7:].reshape(-1, 3, 4),
                        np.broadcast_to([0.0, 0.0, 0.0, 1.0], (len(rows), 1, 4))], axis=1)
  name = "camera"
  check_poses(w2c, path, name)
  K = np.zeros((len(rows), 3, 3))
  K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = (
      rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4], 1.0)
  K = check_intrinsics(K, len(rows), path, name)
  poses = orthonormalize(invert_pose(w2c))
  return {name: CameraTrack(poses, K, rows[:, 0] / 1e6)}


def write_realestate10k(path, tracks: dict[str, CameraTrack], url="realcam://trajectory"):
  """Writes a RealEstate10K pose file; one camera per file."""
  if len(tracks) != 1:
    raise CameraFileError(f"cannot write {path}: a RealEstate10K file holds one camera, got "
                          f"{len(tracks)} ({', '.join(tracks)}); choose one with --camera")
  (track,) = tracks.values()
  n = len(track.poses)
  K = track.intrinsics
  if K is None:
    w = 1000.0
    K = normalize_intrinsics(intrinsics_from_fov(DEFAULT_FOV_DEG, w, w / DEFAULT_ASPECT),
                             w, w / DEFAULT_ASPECT)
  K = np.broadcast_to(K, (n, 3, 3))
  times = track.timestamps if track.timestamps is not None else np.arange(n) / DEFAULT_FPS
  w2c = invert_pose(track.poses)
  with open(path, "w") as f:
    f.write(url + "\n")
    for i in range(n):
      nums = [K[i, 0, 0], K[i, 1, 1], K[i, 0, 2], K[i, 1, 2], 0.0, 0.0] + list(w2c[i, :3].ravel())
      f.write(f"{int(round(times[i] * 1e6))} " + " ".join(f"{v:.12g}" for v in nums) + "\n")

"""Camera files: read and write every supported format, with format detection.

All readers return `{camera_name: CameraTrack}` in our convention
(camera-to-world, OpenCV axes, metres; intrinsics normalised by image size)
and raise `CameraFileError` naming file, frame and camera on bad input.
Formats: "json" (ours), "npz" (ours), "recammaster" (ReCamMaster /
MultiCamVideo `camera_extrinsics.json`, Unreal units), "realestate10k".
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from realcam_jax.camera.external import (opencv_to_unreal, read_realestate10k, read_recammaster,
                                         unreal_to_opencv, write_realestate10k, write_recammaster)
from realcam_jax.camera.intrinsics import normalize_intrinsics
from realcam_jax.camera.track import CONVENTION, CameraTrack, load_json
from realcam_jax.camera.validate import CameraFileError, check_intrinsics, check_poses

FORMATS = ("json", "npz", "recammaster", "realestate10k")
__all__ = ["CONVENTION", "FORMATS", "CameraTrack", "detect_format", "opencv_to_unreal",
           "read_camera", "read_cameras", "unreal_to_opencv", "write_cameras"]


def detect_format(path) -> str:
  """Format of a camera file from its extension and, for `.json`, its content."""
  path = str(path)
  ext = os.path.splitext(path)[1].lower()
  if ext == ".npz":
    return "npz"
  if ext == ".txt":
    return "realestate10k"
  if ext == ".json":
    if not os.path.exists(path):
      return "json"
    data = load_json(path)
    if isinstance(data, dict) and data and all(re.fullmatch(r"frame\d+", k) for k in data):
      return "recammaster"
    return "json"
  raise CameraFileError(f"cannot tell the camera file format of {path}: expected a .json "
                        f"(ours or ReCamMaster), .npz or .txt (RealEstate10K) file")


# ------------------------------------------------------------------ our JSON
def _track_from_json(obj, path, name):
  if not isinstance(obj, dict) or "poses" not in obj:
    raise CameraFileError(f"camera {name} in {path}: expected an object with \"poses\" "
                          f"([T][4][4] camera-to-world)")
  poses = check_poses(obj["poses"], path, name)
  K = obj.get("intrinsics")
  if K is not None:
    K = check_intrinsics(K, len(poses), path, name)
    if obj.get("image_size") is not None:
      w, h = obj["image_size"]
      K = normalize_intrinsics(K, w, h)
  times = obj.get("timestamps")
  if times is not None:
    times = np.asarray(times, dtype=np.float64)
    if times.shape != (len(poses),):
      raise CameraFileError(f"timestamps of {name} in {path}: expected {len(poses)} numbers, "
                            f"got shape {times.shape}")
  return CameraTrack(poses, K, times)


def _check_convention(conv, path):
  if conv is not None and str(conv) != CONVENTION:
    raise CameraFileError(f"camera file {path} declares convention {str(conv)!r}; expected "
                          f"{CONVENTION!r}")


def read_json(path) -> dict[str, CameraTrack]:
  """Reads our JSON: one camera (`"poses"`) or several (`"cameras": {name: {...}}`)."""
  data = load_json(path)
  if not isinstance(data, dict):
    raise CameraFileError(f"camera file {path}: expected a JSON object with \"poses\" "
                          "or \"cameras\"")
  _check_convention(data.get("convention"), path)
  if "cameras" in data:
    if not isinstance(data["cameras"], dict) or not data["cameras"]:
      raise CameraFileError(f"camera file {path}: \"cameras\" must map names to tracks")
    return {n: _track_from_json(t, path, n) for n, t in data["cameras"].items()}
  return {data.get("name", "camera"): _track_from_json(data, path, data.get("name", "camera"))}


def _track_to_json(track):
  out = {"poses": np.asarray(track.poses).tolist()}
  if track.intrinsics is not None:
    out["intrinsics"] = np.asarray(track.intrinsics).tolist()
  if track.timestamps is not None:
    out["timestamps"] = np.asarray(track.timestamps).tolist()
  return out


def write_json(path, tracks: dict[str, CameraTrack]):
  data = {"convention": CONVENTION}
  if len(tracks) == 1:
    (name, track), = tracks.items()
    data.update(name=name, **_track_to_json(track))
  else:
    data["cameras"] = {n: _track_to_json(t) for n, t in tracks.items()}
  with open(path, "w") as f:
    json.dump(data, f)


# ------------------------------------------------------------------- our NPZ
def read_npz(path) -> dict[str, CameraTrack]:
  """Reads our NPZ: `poses` [T,4,4] (or [C,T,4,4] with `names` [C]), optional
  `intrinsics` and `timestamps` with matching leading axes."""
  try:
    with np.load(path, allow_pickle=False) as z:
      data = {k: z[k] for k in z.files}
  except (OSError, ValueError) as e:
    raise CameraFileError(f"camera file {path} is not a readable .npz file: {e}") from None
  if "poses" not in data:
    raise CameraFileError(f"camera file {path}: expected an array 'poses' [T, 4, 4] or "
                          f"[C, T, 4, 4], found {sorted(data) or 'nothing'}")
  _check_convention(data["convention"].item() if "convention" in data else None, path)
  poses = data["poses"]
  single = poses.ndim == 3
  names = [str(n) for n in data["names"]] if "names" in data else (
      ["camera"] if single else [f"cam{i:02d}" for i in range(len(poses))])
  if single:
    poses = poses[None]
  if poses.ndim != 4 or len(names) != len(poses):
    raise CameraFileError(f"camera file {path}: expected 'poses' [T, 4, 4] or [C, T, 4, 4] with "
                          f"C = len(names) = {len(names)}, got shape {data['poses'].shape}")
  tracks = {}
  for c, name in enumerate(names):
    K = data.get("intrinsics")
    times = data.get("timestamps")
    tracks[name] = _track_from_json(
        {"poses": poses[c], "intrinsics": None if K is None else (K if single else K[c]),
         "timestamps": None if times is None else (times if single else times[c])}, path, name)
  return tracks


def write_npz(path, tracks: dict[str, CameraTrack]):
  lengths = {len(t.poses) for t in tracks.values()}
  if len(lengths) != 1:
    raise CameraFileError(f"cannot write {path}: an .npz needs the same number of frames for "
                          f"every camera, got {sorted(lengths)}")
  items = list(tracks.values())
  out = {"convention": np.array(CONVENTION), "names": np.array(list(tracks))}
  stack = (lambda xs: xs[0]) if len(items) == 1 else np.stack
  out["poses"] = stack([t.poses for t in items])
  for key in ("intrinsics", "timestamps"):
    if all(getattr(t, key) is not None for t in items):
      out[key] = stack([np.broadcast_to(getattr(t, key), t.poses.shape[:1] + (
          (3, 3) if key == "intrinsics" else ())) for t in items])
  np.savez(path, **out)


# --------------------------------------------------------------- dispatchers
_READERS = {"json": read_json, "npz": read_npz, "recammaster": read_recammaster,
            "realestate10k": read_realestate10k}
_WRITERS = {"json": write_json, "npz": write_npz, "recammaster": write_recammaster,
            "realestate10k": write_realestate10k}


def _check_fmt(fmt):
  if fmt not in FORMATS:
    raise CameraFileError(f"unknown camera file format {fmt!r}: expected one of "
                          f"{', '.join(FORMATS)}")


def read_cameras(path, fmt=None) -> dict[str, CameraTrack]:
  """Reads every camera in a file; `fmt` defaults to `detect_format(path)`."""
  path = str(path)
  if not os.path.isfile(path):
    raise CameraFileError(f"camera file {path} does not exist")
  if os.path.getsize(path) == 0:
    raise CameraFileError(f"camera file {path} is empty")
  fmt = fmt or detect_format(path)
  _check_fmt(fmt)
  return _READERS[fmt](path)


def read_camera(path, camera=None, fmt=None) -> CameraTrack:
  """Reads one camera; `camera` is required when the file holds several."""
  tracks = read_cameras(path, fmt)
  if camera is None:
    if len(tracks) == 1:
      return next(iter(tracks.values()))
    raise CameraFileError(f"camera file {path} holds {len(tracks)} cameras "
                          f"({', '.join(tracks)}); choose one")
  if camera not in tracks:
    raise CameraFileError(f"camera {camera} is not in {path}: expected one of {', '.join(tracks)}")
  return tracks[camera]


def write_cameras(path, tracks, fmt=None):
  """Writes a CameraTrack, a `[T, 4, 4]` pose array or `{name: CameraTrack}`."""
  path = str(path)
  if isinstance(tracks, CameraTrack):
    tracks = {"camera": tracks}
  elif not isinstance(tracks, dict):
    tracks = {"camera": CameraTrack(np.asarray(tracks, dtype=np.float64))}
  if not tracks:
    raise CameraFileError(f"cannot write {path}: no cameras given")
  for name, t in tracks.items():
    check_poses(t.poses, path, name)
  if fmt is None:
    ext = os.path.splitext(path)[1].lower()
    fmt = {".npz": "npz", ".txt": "realestate10k", ".json": "json"}.get(ext)
    if fmt is None:
      raise CameraFileError(f"cannot tell which camera format to write for {path}: use a .json, "
                            f".npz or .txt name, or give the format ({', '.join(FORMATS)})")
  _check_fmt(fmt)
  _WRITERS[fmt](path, tracks)

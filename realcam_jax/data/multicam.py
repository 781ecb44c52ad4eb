"""Import ReCamMaster's MultiCamVideo dataset into TFDS ArrayRecord records.

  realcam data import multicamvideo --src MultiCamVideo-Dataset --out DATA --size 480x832 --frames 81

Source layout (13.6K Unreal Engine 5 scenes x 10 synchronised cameras, 81 frames of
1280x1280 at 15 fps):
  SRC/train/f18_aperture10/scene1/videos/cam01.mp4 ... cam10.mp4
  SRC/train/f18_aperture10/scene1/cameras/camera_extrinsics.json   (Unreal units)
  SRC/train/metadata.csv   columns file_name,text; file_name relative to train/ names a video
  SRC/val/10basic_trajectories/{videos,cameras}/...                (no focal folder: --focal-mm)

Every record is one ordered (source camera, target camera) pair of a scene, in the
record format of the synthetic builder (`tfds_builder`, C = 1 target camera), so
`pipeline.make_dataset(..., source=open_imported(DATA)[split])` and `realcam data
encode --dataset DATA` read it unchanged. Added features: caption u8[n] (UTF-8 of the
*target* video's caption), caption_sha1 u8[20] (the key into `realcam text encode`'s
store), scene u8[n] (its path under SRC/<split>/), source_camera i64, target_camera
i64[1] (camera numbers, cam07 -> 7). source/target_trajectory are -1 (no preset).

  - frames: the first N of each video, centre-cropped to the HxW aspect and resized
    (area filter); intrinsics follow the crop: f_px = focal_mm / 23.76 mm * video width
    (square pixels), principal point at the centre.
  - poses: `camera.external.read_recammaster` (the tested Unreal -> OpenCV transform,
    cm -> m), world camera-to-world per frame.
  - pairs: `all` ordered pairs, or `random` k distinct ordered pairs per scene, drawn
    from (seed, scene path) so they do not depend on the process count.

Resumable and sharded: the sorted scene list is cut into chunks of `scenes_per_shard`;
process p of P imports chunks c with c % P == p into `OUT/.import-<split>/chunk-c.*`
(record file then its summary, each written under a temporary name and renamed).
A rerun skips finished chunks. When every chunk is done, process 0 moves the chunks
into place as `multicamvideo-<split>.array_record-*` shards and writes
`dataset_info.json`, `features.json` (TFDS metadata) and `captions.json`
(sha1 -> caption); nothing reads as a dataset before that.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re

import numpy as np

NAME = "multicamvideo"
SENSOR_MM = 23.76
SPLIT_NAMES = {"train": "train", "val": "validation"}
INFO_FILE, CAPTIONS_FILE = "import_info.json", "captions.json"
_FOCAL = re.compile(r"f(\d+(?:\.\d+)?)_aperture")
_CAM = re.compile(r"cam(\d+)\.mp4")


class ImportError_(ValueError):
  """The import as a whole cannot run (bad arguments, a source that is not MultiCamVideo)."""


class SceneError(Exception):
  """One scene cannot be imported: `kind` (for the summary) and a line naming the file."""

  def __init__(self, kind: str, message: str):
    super().__init__(message)
    self.kind = kind


@dataclasses.dataclass(frozen=True)
class ImportSettings:
  height: int
  width: int
  frames: int
  pairs: str = "all"          # all | random
  pairs_per_scene: int = 1    # k for pairs="random"
  seed: int = 0
  split: str = "train"        # train | val
  focal_mm: float = 0.0       # 0: from the focal folder name (f18_aperture10 -> 18 mm)
  scenes_per_shard: int = 16

  def validate(self):
    for name in ("height", "width", "frames", "pairs_per_scene", "scenes_per_shard"):
      v = getattr(self, name)
      if not isinstance(v, int) or v < 1:
        raise ImportError_(f"{name}={v!r}: expected an integer >= 1")
    if self.pairs not in ("all", "random"):
      raise ImportError_(f"pairs={self.pairs!r}: expected 'all' or 'random'")
    if self.split not in SPLIT_NAMES:
      raise ImportError_(f"split={self.split!r}: expected one of {sorted(SPLIT_NAMES)}")
    if self.focal_mm < 0:
      raise ImportError_(f"focal_mm={self.focal_mm}: expected > 0 (or 0: from the folder name)")
    return self


# ----------------------------------------------------------------------------- records

def features(settings: ImportSettings):
  """The TFDS features of an imported record (the synthetic record format, C = 1)."""
  import tensorflow_datasets as tfds
  t, h, w = settings.frames, settings.height, settings.width
  T, zlib = tfds.features.Tensor, tfds.features.Encoding.ZLIB
  return tfds.features.FeaturesDict(dict(
      source_rgb=T(shape=(t, h, w, 3), dtype=np.uint8, encoding=zlib),
      target_rgb=T(shape=(1, t, h, w, 3), dtype=np.uint8, encoding=zlib),
      source_c2w=T(shape=(t, 4, 4), dtype=np.float32),
      target_c2w=T(shape=(1, t, 4, 4), dtype=np.float32),
      intrinsics=T(shape=(3, 3), dtype=np.float32),
      seed=T(shape=(), dtype=np.int64),
      view_change=T(shape=(1, 2), dtype=np.float32),
      source_trajectory=T(shape=(), dtype=np.int64),
      target_trajectory=T(shape=(1,), dtype=np.int64),
      caption=T(shape=(None,), dtype=np.uint8),
      caption_sha1=T(shape=(20,), dtype=np.uint8),
      scene=T(shape=(None,), dtype=np.uint8),
      source_camera=T(shape=(), dtype=np.int64),
      target_camera=T(shape=(1,), dtype=np.int64),
  ))


def caption_key(text: str) -> str:
  """sha1 hex of a caption (UTF-8): the key of its embedding in the text store."""
  return hashlib.sha1(text.encode("utf-8")).hexdigest()


def decode_text(arr) -> str:
  return np.asarray(arr, np.uint8).tobytes().decode("utf-8")


# ----------------------------------------------------------------------------- source tree

@dataclasses.dataclass(frozen=True)
class Scene:
  rel: str          # path under SRC/<split>/, e.g. "f18_aperture10/scene1"
  path: str
  focal_mm: float   # 0 when the folder does not say


def find_scenes(src: str, split: str) -> list[Scene]:
  """Scene folders (holding `videos/` or `cameras/`) under SRC/<split>/, sorted."""
  root = os.path.join(src, split)
  if not os.path.isdir(root):
    raise ImportError_(f"{root} is not a folder; expected the MultiCamVideo-Dataset root "
                       f"with {split}/ inside")
  scenes = []
  for dirpath, dirnames, _ in os.walk(root):
    dirnames.sort()
    if "videos" in dirnames or "cameras" in dirnames:
      rel = os.path.relpath(dirpath, root)
      m = _FOCAL.search(rel)
      scenes.append(Scene(rel, dirpath, float(m.group(1)) if m else 0.0))
      dirnames[:] = []
  if not scenes:
    raise ImportError_(f"no scene folders (with videos/ and cameras/) under {root}")
  return sorted(scenes, key=lambda s: s.rel)


def read_captions(path: str) -> dict[str, str]:
  """metadata.csv (file_name,text) -> {file_name: text}."""
  try:
    with open(path, newline="", encoding="utf-8") as f:
      reader = csv.DictReader(f)
      if not reader.fieldnames or not {"file_name", "text"} <= set(reader.fieldnames):
        raise ImportError_(f"caption file {path}: expected the columns file_name,text; got "
                           f"{reader.fieldnames}")
      return {os.path.normpath(row["file_name"]): row["text"] for row in reader
              if row.get("file_name")}
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise ImportError_(f"caption file {path} cannot be read: {e}") from None


def choose_pairs(cameras: list[int], settings: ImportSettings, scene_rel: str
                 ) -> list[tuple[int, int]]:
  """Ordered (source, target) camera pairs of one scene."""
  pairs = [(s, t) for s in cameras for t in cameras if s != t]
  if settings.pairs == "all":
    return pairs
  digest = hashlib.sha1(f"{settings.seed}/{scene_rel}".encode()).digest()
  rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
  k = min(settings.pairs_per_scene, len(pairs))
  return [pairs[i] for i in sorted(rng.choice(len(pairs), size=k, replace=False))]


def crop_box(src_h: int, src_w: int, h: int, w: int) -> tuple[int, int, int, int]:
  """Centre crop (y0, x0, ch, cw) of a src_h x src_w frame with the aspect of h x w."""
  if src_w * h > src_h * w:
    ch, cw = src_h, int(round(src_h * w / h))
  else:
    ch, cw = int(round(src_w * h / w)), src_w
  return (src_h - ch) // 2, (src_w - cw) // 2, ch, cw


def intrinsics_after_crop(focal_mm: float, src_h: int, src_w: int, h: int, w: int) -> np.ndarray:
  """Pixel K of the h x w output: f from the focal length over the 23.76 mm square sensor."""
  y0, x0, ch, cw = crop_box(src_h, src_w, h, w)
  fx = fy = focal_mm / SENSOR_MM * src_w   # square pixels; the sensor width spans the video
  sx, sy = w / cw, h / ch
  return np.array([[fx * sx, 0, (src_w / 2 - x0) * sx], [0, fy * sy, (src_h / 2 - y0) * sy],
                   [0, 0, 1]], np.float32)


def read_frames(path: str, n: int, h: int, w: int) -> tuple[np.ndarray, tuple[int, int]]:
  """First n frames of a video, centre-cropped and resized: (u8[n, h, w, 3], source (H, W))."""
  import cv2

  from realcam_jax.inference.video_io import VideoError, iter_video
  out, size = [], None
  try:
    for frame in iter_video(path, max_frames=n):
      if size is None:
        size = frame.shape[:2]
        y0, x0, ch, cw = crop_box(*size, h, w)
      crop = frame[y0:y0 + ch, x0:x0 + cw]
      out.append(crop if (ch, cw) == (h, w) else
                 cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA))
  except VideoError as e:
    raise SceneError("unreadable video", str(e)) from None
  if len(out) < n:
    raise SceneError("short video", f"video file {path} has {len(out)} frames; the import "
                     f"needs {n} (--frames)")
  return np.stack(out), size


def _view_change(src_c2w, tgt_c2w) -> np.ndarray:
  rel = src_c2w[0, :3, :3].T @ tgt_c2w[0, :3, :3]
  angle = np.degrees(np.arccos(np.clip((np.trace(rel) - 1) / 2, -1, 1)))
  return np.array([[angle, np.linalg.norm(tgt_c2w[0, :3, 3] - src_c2w[0, :3, 3])]], np.float32)


def load_scene(scene: Scene, settings: ImportSettings, captions: dict[str, str]) -> list[dict]:
  """The records of one scene; raises SceneError naming the file and the problem."""
  from realcam_jax.camera.external import read_recammaster
  from realcam_jax.camera.validate import CameraFileError
  cam_file = os.path.join(scene.path, "cameras", "camera_extrinsics.json")
  if not os.path.isfile(cam_file):
    raise SceneError("missing camera file", f"camera file {cam_file} is missing")
  video_dir = os.path.join(scene.path, "videos")
  videos = {}
  for name in sorted(os.listdir(video_dir)) if os.path.isdir(video_dir) else []:
    m = _CAM.fullmatch(name)
    if m:
      videos[int(m.group(1))] = os.path.join(video_dir, name)
  if len(videos) < 2:
    raise SceneError("missing videos", f"video folder {video_dir} has {len(videos)} camera "
                     "video(s) camNN.mp4; a pair needs 2")
  focal = settings.focal_mm or scene.focal_mm
  if not focal > 0:
    raise SceneError("unknown focal length", f"scene {scene.path}: no fNN_aperture folder "
                     "gives the focal length; pass --focal-mm")
  try:
    tracks = read_recammaster(cam_file)
  except CameraFileError as e:
    raise SceneError("bad camera file", str(e)) from None
  pairs = choose_pairs(sorted(videos), settings, scene.rel)
  used = sorted({c for p in pairs for c in p})
  poses = {}
  for cam in used:
    track = tracks.get(f"cam{cam:02d}")
    if track is None:
      raise SceneError("camera missing from JSON", f"camera file {cam_file} has no camera "
                       f"cam{cam:02d} (video {videos[cam]}); it has {', '.join(sorted(tracks))}")
    if len(track.poses) < settings.frames:
      raise SceneError("short camera track", f"camera file {cam_file}: cam{cam:02d} has "
                       f"{len(track.poses)} frames; the import needs {settings.frames}")
    poses[cam] = track.poses[:settings.frames].astype(np.float32)
  texts = {}
  for cam in sorted({t for _, t in pairs}):
    key = os.path.normpath(os.path.join(scene.rel, "videos", f"cam{cam:02d}.mp4"))
    if key not in captions:
      raise SceneError("caption missing", f"metadata.csv has no caption for {key} "
                       f"(video {videos[cam]})")
    texts[cam] = captions[key]
  frames, sizes = {}, {}
  for cam in used:
    frames[cam], sizes[cam] = read_frames(videos[cam], settings.frames, settings.height,
                                          settings.width)
  records = []
  for s, t in pairs:
    text = texts[t]
    sha = hashlib.sha1(text.encode("utf-8")).digest()
    seed = int.from_bytes(hashlib.sha1(f"{scene.rel}/{s}/{t}".encode()).digest()[:8],
                          "little") >> 1
    records.append(dict(
        source_rgb=frames[s], target_rgb=frames[t][None], source_c2w=poses[s],
        target_c2w=poses[t][None],
        intrinsics=intrinsics_after_crop(focal, *sizes[s], settings.height, settings.width),
        seed=np.int64(seed), view_change=_view_change(poses[s], poses[t]),
        source_trajectory=np.int64(-1), target_trajectory=np.array([-1], np.int64),
        caption=np.frombuffer(text.encode("utf-8"), np.uint8),
        caption_sha1=np.frombuffer(sha, np.uint8), scene=np.frombuffer(scene.rel.encode(), np.uint8),
        source_camera=np.int64(s), target_camera=np.array([t], np.int64)))
  return records

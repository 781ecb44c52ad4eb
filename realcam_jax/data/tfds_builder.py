"""TFDS builder for the synthetic multi-camera world (ArrayRecord, no TensorFlow).

Every example is one clip rendered by `synthetic.sample_clip(seed, ...)`;
features are plain `tfds.features.Tensor`s (frames zlib-compressed bytes), so
building and reading (`tfds.data_source`, `builder.as_data_source()`) work
without TensorFlow. Splits use disjoint seed ranges:

  train       seeds seed_offset + [0, n)
  validation  seeds seed_offset + 2**30 + [0, n)
  test        seeds seed_offset + 2**31 + [0, n)

On disk: `DATA_DIR/realcam_synthetic/<config name>/<version>/`. TFDS writes
every split into a temporary `incomplete.*` sibling directory and renames it
when all splits are done, so an interrupted build never leaves a directory
that reads as a dataset (`load_builder` says so and how to rebuild).

Features (T frames, C target cameras, H x W pixels):
  source_rgb u8[T,H,W,3]      target_rgb u8[C,T,H,W,3]
  source_c2w f32[T,4,4]       target_c2w f32[C,T,4,4]    (world poses)
  intrinsics f32[3,3]         seed i64[]                 view_change f32[C,2]
  source_trajectory i64[], target_trajectory i64[C]      (index into metadata names)
  optional (`extra_features`): source/target_static_mask bool, source/target_depth f32
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import os
import tempfile

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from realcam_jax.data import rig, synthetic

NAME = "realcam_synthetic"
VERSION = "1.0.0"
RELEASE_NOTES = {VERSION: "First release."}
SPLITS = ("train", "validation", "test")
SPLIT_SEED_BASE = {"train": 0, "validation": 2**30, "test": 2**31}
EXTRA_FEATURES = ("static_mask", "depth")
_ZLIB = tfds.features.Encoding.ZLIB


# Every build uses its own config object, which TFDS reports as a warning each time.
logging.getLogger("absl").addFilter(
    lambda record: "Using custom data configuration" not in record.getMessage())


class DatasetMissingError(FileNotFoundError):
  """No complete dataset at the requested place."""


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
  """What to render: sizes, cameras, clips per split, scene and rig settings."""
  height: int = 64
  width: int = 64
  num_frames: int = 33
  num_target_cameras: int = 1
  fps: float = 15.0
  split_sizes: dict = dataclasses.field(
      default_factory=lambda: {"train": 2048, "validation": 64, "test": 64})
  seed_offset: int = 0
  scene: dict = dataclasses.field(default_factory=dict)
  rig: dict = dataclasses.field(default_factory=dict)
  extra_features: tuple = ()

  def validate(self):
    """Raises ValueError naming the bad field."""
    for field, lo in (("height", 1), ("width", 1), ("num_frames", 1),
                      ("num_target_cameras", 1)):
      v = getattr(self, field)
      if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
        raise ValueError(f"dataset config {field}={v!r}: expected an int >= {lo}")
    if not self.fps > 0:
      raise ValueError(f"dataset config fps={self.fps!r}: expected > 0")
    bad = set(self.split_sizes) - set(SPLITS)
    if bad:
      raise ValueError(f"dataset config split_sizes has unknown splits {sorted(bad)}; "
                       f"expected some of {SPLITS}")
    for split, n in self.split_sizes.items():
      if not isinstance(n, (int, np.integer)) or n < 0 or n >= 2**30:
        raise ValueError(f"dataset config split_sizes[{split!r}]={n!r}: expected 0 <= n < 2**30")
    if not any(self.split_sizes.values()):
      raise ValueError("dataset config split_sizes are all 0; expected at least one clip")
    bad = set(self.extra_features) - set(EXTRA_FEATURES)
    if bad:
      raise ValueError(f"dataset config extra_features has {sorted(bad)}; expected some of "
                       f"{EXTRA_FEATURES}")
    # Scene and rig configs raise their own errors naming the field.
    synthetic.make_scene(0, **self.scene)
    rig.validate_rig_config(dict(self.rig))
    return self


def _plain(x):
  return x.to_dict() if hasattr(x, "to_dict") else dict(x)


def default_name(data) -> str:
  """`<H>x<W>_t<T>_c<C>_<hash>`: the hash covers every setting that changes the
  clips (fps, seeds, scene, rig, extra features) but not the split sizes."""
  settings = dict(fps=float(data.fps), seed_offset=int(data.seed_offset),
                  scene=_plain(data.scene), rig=_plain(data.rig),
                  extra=sorted(data.extra_features))
  digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=list).encode()).hexdigest()
  return f"{data.height}x{data.width}_t{data.num_frames}_c{data.num_target_cameras}_{digest[:8]}"


def config_from_data(data) -> SyntheticConfig:
  """Builder config from a `config.data` section (see configs/data.py)."""
  plain = _plain
  cfg = SyntheticConfig(
      name=data.name or default_name(data),
      version=VERSION, release_notes=dict(RELEASE_NOTES),
      description="RealCam synthetic multi-camera world",
      height=int(data.height), width=int(data.width), num_frames=int(data.num_frames),
      num_target_cameras=int(data.num_target_cameras), fps=float(data.fps),
      split_sizes={k: int(v) for k, v in plain(data.split_sizes).items()},
      seed_offset=int(data.seed_offset), scene=_tuples(plain(data.scene)),
      rig=_tuples(plain(data.rig)), extra_features=tuple(data.extra_features))
  return cfg.validate()


def _tuples(d: dict) -> dict:
  return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


class RealcamSynthetic(tfds.core.GeneratorBasedBuilder):
  """Synthetic dynamic scenes seen by a source and C target cameras."""

  VERSION = tfds.core.Version(VERSION)
  RELEASE_NOTES = dict(RELEASE_NOTES)
  BUILDER_CONFIGS = [SyntheticConfig(name="default", version=VERSION,
                                     release_notes=dict(RELEASE_NOTES))]

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # TFDS's default looks the module up as a package resource, which needs the
    # `importlib_resources` backport (not installed); the file path is enough.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    c: SyntheticConfig = self.builder_config
    t, h, w, n = c.num_frames, c.height, c.width, c.num_target_cameras
    T = tfds.features.Tensor
    feats = dict(
        source_rgb=T(shape=(t, h, w, 3), dtype=np.uint8, encoding=_ZLIB),
        target_rgb=T(shape=(n, t, h, w, 3), dtype=np.uint8, encoding=_ZLIB),
        source_c2w=T(shape=(t, 4, 4), dtype=np.float32),
        target_c2w=T(shape=(n, t, 4, 4), dtype=np.float32),
        intrinsics=T(shape=(3, 3), dtype=np.float32),
        seed=T(shape=(), dtype=np.int64),
        view_change=T(shape=(n, 2), dtype=np.float32),
        source_trajectory=T(shape=(), dtype=np.int64),
        target_trajectory=T(shape=(n,), dtype=np.int64),
    )
    if "static_mask" in c.extra_features:
      feats["source_static_mask"] = T(shape=(t, h, w), dtype=np.bool_, encoding=_ZLIB)
      feats["target_static_mask"] = T(shape=(n, t, h, w), dtype=np.bool_, encoding=_ZLIB)
    if "depth" in c.extra_features:
      feats["source_depth"] = T(shape=(t, h, w), dtype=np.float32, encoding=_ZLIB)
      feats["target_depth"] = T(shape=(n, t, h, w), dtype=np.float32, encoding=_ZLIB)
    settings = dict(dataclasses.asdict(c), trajectory_names=rig.trajectory_names())
    for k in ("name", "version", "release_notes", "supported_versions", "description", "tags"):
      settings.pop(k, None)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(feats),
        description=__doc__.split("\n\n")[0],
        metadata=tfds.core.MetadataDict(settings=json.loads(json.dumps(settings, default=list))))

  def _split_generators(self, dl_manager):
    del dl_manager
    c: SyntheticConfig = self.builder_config
    return {split: self._generate_examples(split, n)
            for split, n in c.split_sizes.items() if n > 0}

  def _generate_examples(self, split, num_clips):
    c: SyntheticConfig = self.builder_config
    names = rig.trajectory_names()
    progress = getattr(self, "_progress", None)
    for i in range(num_clips):
      seed = c.seed_offset + SPLIT_SEED_BASE[split] + i
      clip = synthetic.sample_clip(seed, c.num_frames, c.height, c.width, c.num_target_cameras,
                                   fps=c.fps, scene=c.scene, rig=c.rig)
      ex = dict(source_rgb=clip["source_rgb"], target_rgb=clip["target_rgb"],
                source_c2w=clip["source_c2w"], target_c2w=clip["target_c2w"],
                intrinsics=clip["intrinsics"], seed=np.int64(seed),
                view_change=clip["view_change"],
                source_trajectory=np.int64(names.index(clip["source_trajectory"])),
                target_trajectory=np.array([names.index(n) for n in clip["target_trajectories"]],
                                           np.int64))
      for extra in c.extra_features:
        for cam in ("source", "target"):
          ex[f"{cam}_{extra}"] = clip[f"{cam}_{extra}"]
      if progress is not None:
        progress(split)
      yield seed, ex


def dataset_dir(data_dir: str, config: SyntheticConfig) -> str:
  """Where a complete build of `config` lives under `data_dir`."""
  return os.path.join(data_dir, NAME, config.name, VERSION)


def build(data_dir: str, config: SyntheticConfig, *, progress=None,
          overwrite: bool = False) -> str:
  """Renders and writes all splits; returns the dataset directory.

  Args:
    data_dir: root directory (the dataset goes to `dataset_dir(data_dir, config)`).
    config: what to render.
    progress: optional callable `progress(split)` called after each clip.
    overwrite: rebuild when a complete dataset already exists.

  Raises:
    FileExistsError: a complete dataset exists and `overwrite` is False.
  """
  config.validate()
  target = dataset_dir(data_dir, config)
  if os.path.exists(target) and not overwrite:
    raise FileExistsError(f"a dataset already exists at {target}; pass --overwrite to rebuild")
  builder = RealcamSynthetic(config=config, data_dir=data_dir, file_format="array_record")
  builder._progress = progress  # read by _generate_examples
  mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if not overwrite
          else tfds.download.GenerateMode.FORCE_REDOWNLOAD)
  with tempfile.TemporaryDirectory() as downloads:  # nothing is downloaded; keep DATA_DIR clean
    builder.download_and_prepare(
        download_dir=downloads,
        download_config=tfds.download.DownloadConfig(download_mode=mode))
  return target


def load_builder(data_dir: str, config: SyntheticConfig) -> RealcamSynthetic:
  """The builder of a complete dataset, ready for `as_data_source(split)`.

  Raises:
    DatasetMissingError: nothing (complete) was built there; the message says
      whether an interrupted build was found and how to rebuild.
  """
  target = dataset_dir(data_dir, config)
  if not os.path.isfile(os.path.join(target, "dataset_info.json")):
    parent = os.path.dirname(target)
    partial = sorted(glob.glob(os.path.join(parent, "incomplete*")))
    hint = (f" Found {len(partial)} unfinished build director{'y' if len(partial) == 1 else 'ies'}"
            f" ({os.path.basename(partial[0])}{', ...' if len(partial) > 1 else ''}): an"
            " interrupted build; delete it." if partial else "")
    raise DatasetMissingError(
        f"no complete dataset {config.name!r} at {target}.{hint} Build it with "
        f"`realcam data build --config CONFIG --out {data_dir}` (same config, overrides "
        "included).")
  builder = RealcamSynthetic(config=config, data_dir=data_dir)
  stored = builder.info.metadata.get("settings", {})
  _check_settings(stored, config, target)
  return builder


def _check_settings(stored: dict, config: SyntheticConfig, where: str):
  for field in ("height", "width", "num_frames", "num_target_cameras"):
    if field in stored and stored[field] != getattr(config, field):
      raise ValueError(f"dataset at {where} has {field}={stored[field]} but the config asks "
                       f"for {getattr(config, field)}; rebuild or fix the config")

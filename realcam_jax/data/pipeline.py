"""grain input pipeline: clips on disk -> model-ready batches.

  it = make_dataset(data_dir, "train", config, seed=0, batch_size=8)
  batch = next(it)
  state = it.get_state()      # save with the checkpoint; later: it.set_state(state)

Per example (a random map, deterministic per seed, example index and epoch):
  - pick one of the C target cameras (uniform);
  - with probability `loopaug_fraction` build a LoopAug window (loopaug.py;
    `data.loopaug_variant`: "palindrome" (default) or "forward_source"),
    else a contiguous window of `train_frames` frames (random start in
    training, the first frames otherwise);
  - poses relative to the window's first source pose (`source_first`);
  - frames u8 -> f32 in [-1, 1] (float streams, e.g. latents, pass through).

Batch (B examples, L = train_frames):
  source f32[B,L,H,W,3]  target f32[B,L,H,W,3]
  source_poses f32[B,L,4,4]  target_poses f32[B,L,4,4]  intrinsics f32[B,3,3]
  text_embedding f32[B,Lt,Dt] (zeros when the records have none)  has_text bool[B]
  loopaug bool[B]  seed i64[B]  target_camera i64[B]  view_change f32[B,2]

With `config.anchor_key` (a per-camera stream shaped like the target, e.g. the latent
dataset's `anchor_latent`), `anchor` f32[B,L,...] is that stream of the chosen camera,
windowed exactly as the target.

Generic over the stored streams: `config.source_key` / `target_key` name the
frame features (e.g. latents `[F, h, w, c]`); when the poses have more frames
than the stream (pixel poses with latent frames), poses are subsampled to one
per stream frame (every `(T-1)/(F-1)`-th, as the model wants).

Order: shard (`shard_index::shard_count`, default this JAX process) ->
global shuffle (reshuffled every epoch) -> random map -> repeat -> batch ->
threads / worker processes. The iterator state is a small dict (grain's).
"""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

from realcam_jax.camera.pose import relative_to
from realcam_jax.data import loopaug as loopaug_lib


def _data_section(config):
  return config.data if "data" in config else config


@dataclasses.dataclass(frozen=True)
class ClipToExample:
  """The per-example random map (picklable for grain worker processes)."""
  train_frames: int
  loopaug_fraction: float
  loopaug_turn: tuple
  random_window: bool
  source_key: str
  target_key: str
  text_shape: tuple
  loopaug_variant: str = "palindrome"     # loopaug.VARIANTS
  anchor_key: str = ""                    # a per-camera stream windowed like the target

  def __call__(self, record: dict, rng: np.random.Generator) -> dict:
    src, tgt = np.asarray(record[self.source_key]), np.asarray(record[self.target_key])
    anchor = np.asarray(record[self.anchor_key]) if self.anchor_key else None
    if tgt.ndim == src.ndim:  # a single target camera stored without the C axis
      tgt, tgt_c2w = tgt[None], np.asarray(record["target_c2w"])[None]
      anchor = None if anchor is None else anchor[None]
    else:
      tgt_c2w = np.asarray(record["target_c2w"])
    cam = int(rng.integers(tgt.shape[0]))
    tgt, tgt_c2w = tgt[cam], tgt_c2w[cam]
    anchor = None if anchor is None else anchor[cam]
    src_c2w = np.asarray(record["source_c2w"])
    src_c2w, tgt_c2w = _align_poses(src_c2w, len(src)), _align_poses(tgt_c2w, len(src))
    use_loop = self.loopaug_fraction > 0 and rng.uniform() < self.loopaug_fraction
    length = self.train_frames
    if use_loop:
      if anchor is not None and self.loopaug_variant != "palindrome":
        raise ValueError(f"{self.anchor_key} pairs each source frame with the target frame of "
                         f"the same time; LoopAug variant {self.loopaug_variant!r} pairs them "
                         "otherwise: use loopaug_variant='palindrome' with pixel anchors")
      ex = loopaug_lib.apply_loopaug(src, tgt, src_c2w, tgt_c2w, length, rng,
                                     self.loopaug_turn, self.loopaug_variant)
      idx = ex["indices"]
    else:
      if length > len(src):
        raise ValueError(f"data.train_frames={length} but the records have {len(src)} frames")
      start = int(rng.integers(len(src) - length + 1)) if self.random_window else 0
      idx = np.arange(start, start + length)
      ref = src_c2w[idx[0]]
      ex = dict(source=src[idx], target=tgt[idx],
                source_poses=relative_to(src_c2w[idx], ref).astype(np.float32),
                target_poses=relative_to(tgt_c2w[idx], ref).astype(np.float32))
    out = dict(source=_to_float(ex["source"]), target=_to_float(ex["target"]),
               source_poses=ex["source_poses"], target_poses=ex["target_poses"],
               intrinsics=np.asarray(record["intrinsics"], np.float32),
               loopaug=np.bool_(use_loop), seed=np.int64(record.get("seed", -1)),
               target_camera=np.int64(cam))
    if anchor is not None:
      out["anchor"] = _to_float(anchor[idx])
    if "view_change" in record:
      out["view_change"] = np.asarray(record["view_change"], np.float32).reshape(-1, 2)[cam]
    if "text_embedding" in record:
      out["text_embedding"] = np.asarray(record["text_embedding"], np.float32)
      out["has_text"] = np.bool_(True)
    else:
      out["text_embedding"] = np.zeros(self.text_shape, np.float32)
      out["has_text"] = np.bool_(False)
    return out


def _align_poses(c2w: np.ndarray, num_frames: int) -> np.ndarray:
  """One pose per stream frame: subsample [Tp,4,4] poses to `num_frames`."""
  tp = len(c2w)
  if tp == num_frames:
    return c2w
  if num_frames < 2 or (tp - 1) % (num_frames - 1):
    raise ValueError(f"records have {tp} poses for {num_frames} frames; expected equal counts "
                     "or (poses - 1) divisible by (frames - 1)")
  return c2w[:: (tp - 1) // (num_frames - 1)]


def _to_float(frames: np.ndarray) -> np.ndarray:
  if frames.dtype == np.uint8:
    return frames.astype(np.float32) * (2.0 / 255.0) - 1.0
  return frames.astype(np.float32)


def make_transform(config, split: str, loopaug_fraction: float | None = None) -> ClipToExample:
  """The example transform for a split (random windows and LoopAug in train only)."""
  data = _data_section(config)
  frac = data.loopaug_fraction if loopaug_fraction is None else loopaug_fraction
  if not 0.0 <= frac <= 1.0:
    raise ValueError(f"loopaug_fraction={frac!r}: expected a probability in [0, 1]")
  if data.train_frames < 1:
    raise ValueError(f"data.train_frames={data.train_frames}: expected >= 1")
  variant = str(data.get("loopaug_variant", "palindrome"))
  if variant not in loopaug_lib.VARIANTS:
    raise ValueError(f"data.loopaug_variant={variant!r}: expected one of "
                     f"{', '.join(loopaug_lib.VARIANTS)}")
  return ClipToExample(
      train_frames=int(data.train_frames), loopaug_fraction=float(frac),
      loopaug_turn=tuple(float(x) for x in data.loopaug_turn),
      random_window=split == "train", source_key=data.source_key, target_key=data.target_key,
      text_shape=(int(data.text_len), int(data.text_dim)), loopaug_variant=variant,
      anchor_key=str(data.get("anchor_key", "")))


def open_source(data_dir: str, split: str, config):
  """Random-access source of a built split (numpy records, no TensorFlow)."""
  from realcam_jax.data import tfds_builder
  data = _data_section(config)
  builder = tfds_builder.load_builder(data_dir, tfds_builder.config_from_data(data))
  if split not in builder.info.splits:
    raise ValueError(f"dataset at {tfds_builder.dataset_dir(data_dir, builder.builder_config)} "
                     f"has no split {split!r}; it has {sorted(builder.info.splits)}")
  return builder.as_data_source(split)


def _shard_args(shard_index, shard_count):
  if shard_index is None or shard_count is None:
    import jax
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index={shard_index} with shard_count={shard_count}: expected "
                     "0 <= shard_index < shard_count")
  return int(shard_index), int(shard_count)


def make_dataset(data_dir: str, split: str, config, *, seed: int, batch_size: int | None = None,
                 shard_index: int | None = None, shard_count: int | None = None,
                 loopaug_fraction: float | None = None, num_epochs: int | None = None,
                 shuffle: bool | None = None, num_workers: int | None = None,
                 num_threads: int | None = None, drop_remainder: bool = True, source=None):
  """A checkpointable grain iterator of model-ready batches.

  Args:
    data_dir: root given to `realcam data build --out`.
    split: "train", "validation" or "test".
    config: the full config (with `.data`) or the `config.data` section.
    seed: shuffling and per-example randomness (same seed -> same batches).
    batch_size: B (default `data.batch_size`).
    shard_index, shard_count: this reader's share (`index::count` of the
      records); default: this JAX process of all processes.
    loopaug_fraction: share of LoopAug examples (default `data.loopaug_fraction`;
      any split may use it, windows are random only in "train").
    num_epochs: None repeats forever.
    shuffle: default True for "train", False otherwise.
    num_workers: grain worker processes (default `data.num_workers`; 0 = none).
    num_threads: reader threads (default `data.num_threads`).
    drop_remainder: drop a last partial batch (finite epochs only).
    source: a random-access source to use instead of opening `data_dir`
      (any sequence of records; tests, latent datasets).

  Returns:
    A `grain.DatasetIterator` yielding dicts of numpy arrays (see module
    docstring), with `get_state()` / `set_state(state)`.
  """
  data = _data_section(config)
  batch_size = int(data.batch_size if batch_size is None else batch_size)
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size}: expected >= 1")
  shard_index, shard_count = _shard_args(shard_index, shard_count)
  transform = make_transform(data, split, loopaug_fraction)
  source = open_source(data_dir, split, data) if source is None else source
  ds = grain.MapDataset.source(source)
  if shard_count > 1:
    ds = ds[shard_index::shard_count]
  if len(ds) == 0:
    raise ValueError(f"split {split!r} has no records for shard {shard_index} of {shard_count}")
  if (split == "train") if shuffle is None else shuffle:
    ds = ds.shuffle(seed=seed)
  ds = ds.random_map(transform, seed=seed).repeat(num_epochs)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  threads = int(data.num_threads if num_threads is None else num_threads)
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                               prefetch_buffer_size=max(threads, 1)))
  workers = int(data.num_workers if num_workers is None else num_workers)
  if workers > 0:
    _mark_flags_parsed()
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(it_ds)


def _mark_flags_parsed():
  """grain worker processes read absl flags; outside an absl app mark them parsed."""
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()

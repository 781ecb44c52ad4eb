"""Latent datasets: a built synthetic dataset encoded once by the VAE, read by the same pipeline.

    realcam data encode --config configs/data.py:demo --data-dir DATA --vae VAE_CKPT --out LATENTS

Every record of every split is encoded (posterior mean, normalised with the VAE's
`latents_mean/std`, i.e. exactly what `WanVAE.encode` returns); poses and the
other small features are copied. Teacher and student training then read
`LATENTS` through `make_iterator` (the grain pipeline of `data/pipeline.py`,
with `source_key='source_latent'`), so no VAE runs during training.

On disk (`LATENTS/`):
  meta.json                 dataset name, VAE checkpoint and model config, shapes, sizes
  <split>/<feature>.npy     one array per feature, records stacked on axis 0:
    source_latent f32[N, F, h, w, z]      target_latent f32[N, C, F, h, w, z]
    source_c2w f32[N, T, 4, 4]            target_c2w f32[N, C, T, 4, 4]   (world, pixel frames)
    intrinsics f32[N, 3, 3]               seed i64[N]     view_change f32[N, C, 2]
    anchor_latent f32[N, C, F, h, w, z]   (only with `anchor_depth`: `anchor_videos`, the
                                          source warped to each target camera, encoded)
The directory is written under a temporary name and renamed when every split is
done, so an interrupted run leaves nothing that reads as a dataset.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from realcam_jax.atomic import atomic_dir
from realcam_jax.models.vae import VAEInputError, WanVAE, check_video

META_FILE = "meta.json"
PASSTHROUGH = ("source_c2w", "target_c2w", "intrinsics", "seed", "view_change")


class LatentDatasetError(ValueError):
  """A latent dataset is missing, incomplete, or does not fit the reader's config."""


class LatentSource:
  """Random-access records of one split (a grain data source): `len(src)`, `src[i]`."""

  def __init__(self, root: str, split: str):
    meta_path = os.path.join(root, META_FILE)
    if not os.path.isfile(meta_path):
      raise LatentDatasetError(
          f"no latent dataset at {root!r} ({META_FILE} missing); create it with `realcam data "
          f"encode --config CONFIG --data-dir DATA --vae VAE_CKPT --out {root}`")
    with open(meta_path) as f:
      self.meta = json.load(f)
    if split not in self.meta["splits"]:
      raise LatentDatasetError(f"latent dataset {root!r} has no split {split!r}; it has "
                               f"{sorted(self.meta['splits'])}")
    folder = os.path.join(root, split)
    self.arrays = {name: np.load(os.path.join(folder, name + ".npy"), mmap_mode="r")
                   for name in self.meta["features"]}
    self._len = int(self.meta["splits"][split])

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index: int) -> dict:
    if not -self._len <= index < self._len:
      raise IndexError(f"record {index} of {self._len}")
    return {k: np.array(v[index]) for k, v in self.arrays.items()}


def _encoder(vae: WanVAE):
  graphdef, state = nnx.split(vae)
  fn = jax.jit(lambda s, x: nnx.merge(graphdef, s).encode(x))
  return lambda videos: np.asarray(fn(state, jnp.asarray(videos, jnp.float32) / 127.5 - 1.0))


_WARP = {}


def anchor_videos(rec: Mapping, depth: float) -> np.ndarray:
  """The source video of a record seen from each target camera through the plane `z =
  depth` of the source camera, frame by frame at the frames' own world poses
  (`warp_anchor.warp_pixels_u8`): u8[C, T, H, W, 3]. Encoded, it is the anchor of a
  `model.warp_space = "pixel"` model."""
  from realcam_jax.camera.pose import invert_pose
  from realcam_jax.models import warp_anchor
  for k in ("source_c2w", "target_c2w", "intrinsics"):
    if k not in rec:
      raise LatentDatasetError(f"anchor videos need the records' {k}; these records hold "
                               f"{sorted(rec)}")
  src = np.asarray(rec["source_rgb"])
  s_c2w = np.asarray(rec["source_c2w"], np.float64)
  t_c2w = np.asarray(rec["target_c2w"], np.float64).reshape((-1,) + s_c2w.shape)
  if len(s_c2w) != len(src):
    raise LatentDatasetError(f"anchor videos need one source pose per frame: {len(s_c2w)} "
                             f"poses for {len(src)} frames")
  rel = (invert_pose(s_c2w)[None] @ t_c2w).astype(np.float32)         # [C, T, 4, 4]
  if depth not in _WARP:
    _WARP[depth] = jax.jit(jax.vmap(
        lambda s, r, k: warp_anchor.warp_pixels_u8(s, r, k, depth), in_axes=(None, 0, None)))
  out = _WARP[depth](jnp.asarray(src), jnp.asarray(rel),
                     jnp.asarray(rec["intrinsics"], jnp.float32))
  return np.asarray(out).astype(np.uint8)


def encode_split(records: Sequence[Mapping], vae: WanVAE, folder: str, *, progress=None,
                 anchor_depth: float | None = None) -> int:
  """Encodes `records` (dicts with source_rgb u8[T,H,W,3], target_rgb u8[C,T,H,W,3], ...)
  into `folder/<feature>.npy`; returns the record count. With `anchor_depth`, also
  `anchor_latent` (`anchor_videos` encoded)."""
  n = len(records)
  if n == 0:
    raise LatentDatasetError("cannot encode an empty split")
  os.makedirs(folder, exist_ok=True)
  encode = _encoder(vae)
  outs: dict[str, np.ndarray] = {}
  for i in range(n):
    rec = records[i]
    src, tgt = np.asarray(rec["source_rgb"]), np.asarray(rec["target_rgb"])
    parts = [src[None], tgt]
    if anchor_depth is not None:
      parts.append(anchor_videos(rec, anchor_depth))
    videos = np.concatenate(parts).astype(np.float32)   # [1 + C (+ C), T, H, W, 3]
    if i == 0:
      try:
        check_video(videos, spatial=vae.spatial_factor, temporal=vae.temporal_factor,
                    channels=vae.in_channels, name="dataset clips")
      except VAEInputError as e:
        raise LatentDatasetError(f"{e} -- rebuild the dataset with frame sizes and counts the "
                                 f"VAE accepts") from None
    z = encode(videos)                                       # [1 + C (+ C), F, h, w, z]
    c = len(tgt)
    values = dict(source_latent=z[0], target_latent=z[1:1 + c],
                  **{k: np.asarray(rec[k]) for k in PASSTHROUGH if k in rec})
    if anchor_depth is not None:
      values["anchor_latent"] = z[1 + c:]
    for k, v in values.items():
      if k not in outs:
        outs[k] = np.lib.format.open_memmap(os.path.join(folder, k + ".npy"), mode="w+",
                                            dtype=v.dtype, shape=(n,) + v.shape)
      outs[k][i] = v
    if progress is not None:
      progress()
  for arr in outs.values():
    arr.flush()
  return n


def encode_dataset(sources: Mapping[str, Sequence[Mapping]], vae: WanVAE, out_dir: str, *,
                   meta: Mapping | None = None, overwrite: bool = False,
                   progress=None, anchor_depth: float | None = None) -> str:
  """Encodes every split of `sources` (split -> records) into the latent dataset `out_dir`.

  Atomic: written to a temporary sibling and renamed at the end. `progress(split)`
  is called after each record. `anchor_depth` (metres, > 0) adds `anchor_latent`
  (the pixel-warp anchor of `model.warp_space = "pixel"`; recorded in meta.json).
  """
  if anchor_depth is not None and not anchor_depth > 0:
    raise LatentDatasetError(f"anchor_depth={anchor_depth!r}: expected a plane distance > 0")
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
    raise LatentDatasetError(f"{out_dir} exists and is not empty; pass --overwrite to replace it")
  with atomic_dir(out_dir) as tmp:
    sizes = {}
    for split, records in sources.items():
      cb = (lambda s=split: progress(s)) if progress is not None else None
      sizes[split] = encode_split(records, vae, os.path.join(tmp, split), progress=cb,
                                  anchor_depth=anchor_depth)
    first = os.path.join(tmp, next(iter(sources)))
    features = sorted(f[:-4] for f in os.listdir(first) if f.endswith(".npy"))
    shapes = {f: list(np.load(os.path.join(first, f + ".npy"), mmap_mode="r").shape[1:])
              for f in features}
    info = dict(meta or {}, splits=sizes, features=features, record_shapes=shapes,
                anchor_depth=anchor_depth,
                vae=dict(spatial_factor=vae.spatial_factor, temporal_factor=vae.temporal_factor,
                         z_dim=vae.z_dim, latents_mean=list(vae.latents_mean),
                         latents_std=list(vae.latents_std), normalised=True))
    with open(os.path.join(tmp, META_FILE), "w") as f:
      json.dump(info, f, indent=2, sort_keys=True, default=str)
  return out_dir


# ----------------------------------------------------------------------------- reading

class _RenamingIterator:
  """Pipeline batches -> teacher batch keys; forwards grain's checkpointable state (as bytes)."""

  def __init__(self, inner, uncond_text=None):
    self._inner = inner
    self._uncond = uncond_text   # f32[Lt, Dt]: the empty prompt's embedding (CFG)

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    b = next(self._inner)
    out = dict(source_latents=b["source"], target_latents=b["target"],
               target_poses=b["target_poses"], source_poses=b["source_poses"],
               intrinsics=b["intrinsics"])
    if "anchor" in b:
      out["anchor_latents"] = b["anchor"]
    if np.all(b["has_text"]):
      out["text"] = b["text_embedding"]
      if self._uncond is not None:
        out["text_uncond"] = np.broadcast_to(self._uncond, out["text"].shape).copy()
    return out

  def get_state(self) -> bytes:
    return json.dumps(self._inner.get_state()).encode()

  def set_state(self, state: bytes):
    self._inner.set_state(json.loads(state))

  def start_prefetch(self):
    if hasattr(self._inner, "start_prefetch"):
      self._inner.start_prefetch()


def make_iterator(config, *, split: str = "train", shard_index: int | None = None,
                  shard_count: int | None = None, batch_size: int | None = None):
  """Latent batches for the trainers from `config.data.dataset_dir` (see train/data.py).

  Yields source_latents / target_latents f32[B, F, h, w, z] (F = data.latent_frames),
  target_poses / source_poses f32[B, F, 4, 4] (relative to the window's first source
  pose, one per latent frame), intrinsics f32[B, 3, 3], and text f32[B, Lt, Dt] when
  the records carry embeddings. A `model.warp_space = "pixel"` config also gets
  anchor_latents f32[B, F, h, w, z] (the dataset's `anchor_latent`, which must have been
  encoded at the config's `model.warp_depth`). With `data.text_dir` (a `realcam text encode` store) the
  records' captions are looked up there and text_uncond f32[B, Lt, Dt] (the empty
  prompt, CFG's unconditional text) is added.
  """
  import ml_collections

  from realcam_jax.data import pipeline
  d = config.data
  source = LatentSource(d.dataset_dir, split)
  shape = source.meta["record_shapes"]["source_latent"]
  want = [d.latent_frames, d.latent_height, d.latent_width, d.latent_channels]
  if shape[1:] != want[1:] or shape[0] < want[0]:
    raise LatentDatasetError(
        f"latent dataset {d.dataset_dir!r} holds latents [F, h, w, z] = {shape}; the config "
        f"wants {want} (data.latent_*); re-encode or fix the config")
  from realcam_jax.models import warp_anchor
  anchor_key = ""
  if "model" in config and warp_anchor.pixel_anchor_needed(config.model):
    anchor_key = "anchor_latent"
    depth = float(config.model.get("warp_depth", warp_anchor.DEFAULT_WARP_DEPTH))
    if anchor_key not in source.meta["features"]:
      raise LatentDatasetError(
          f"model.warp_space='pixel' trains on pixel-warp anchors, but the latent dataset "
          f"{d.dataset_dir!r} has none; encode it with `realcam data encode ... "
          f"--anchor-depth {depth:g}`")
    if source.meta.get("anchor_depth") is None or abs(source.meta["anchor_depth"] - depth) > 1e-6:
      raise LatentDatasetError(
          f"the latent dataset {d.dataset_dir!r} holds anchors warped at "
          f"{source.meta.get('anchor_depth')} m, the config's model.warp_depth is {depth:g}; "
          "re-encode with a matching --anchor-depth or set model.warp_depth")
  p = ml_collections.ConfigDict(dict(
      anchor_key=anchor_key, train_frames=int(d.latent_frames), batch_size=int(batch_size or config.train.batch_size),
      num_workers=int(d.get("num_workers", 0)), num_threads=int(d.get("num_threads", 2)),
      loopaug_fraction=float(d.get("loopaug_fraction", 0.0)),
      loopaug_turn=tuple(d.get("loopaug_turn", (0.5, 0.5))),
      loopaug_variant=str(d.get("loopaug_variant", "palindrome")),
      source_key="source_latent", target_key="target_latent",
      text_len=int(config.model.text_len), text_dim=int(config.model.text_dim)))
  uncond = None
  if d.get("text_dir"):
    from realcam_jax.data import text_store
    store = text_store.TextStore(d.text_dir)
    source = text_store.WithText(source, store, p.text_len, p.text_dim)
    uncond = store.empty()
  inner = pipeline.make_dataset(None, split, p, seed=int(config.seed), batch_size=p.batch_size,
                                shard_index=shard_index, shard_count=shard_count, source=source)
  return _RenamingIterator(inner, uncond)


def open_build(data_dir: str, data_config, splits: Iterable[str] | None = None) -> dict:
  """split -> random-access records of a built synthetic dataset (`realcam data build`)."""
  from realcam_jax.data import pipeline, tfds_builder
  builder = tfds_builder.load_builder(data_dir, tfds_builder.config_from_data(data_config))
  available = sorted(builder.info.splits)
  splits = list(splits) if splits else available
  missing = sorted(set(splits) - set(available))
  if missing:
    raise LatentDatasetError(f"the dataset at {data_dir!r} has no split(s) {missing}; it has "
                             f"{available}")
  return {s: pipeline.open_source(data_dir, s, data_config) for s in splits}

"""Latent encoding over all devices, resumable: records -> the latent dataset of `latents.py`.

  realcam data encode --dataset DATA --vae VAE_CKPT --out LATENTS [--batch-size 8]

Each step encodes `batch_size` records, i.e. `batch_size * (1 + C)` videos
[N, T, H, W, 3], split over the mesh's data axes (`jax.jit` with explicit
`NamedSharding`s; the VAE parameters follow `realcam_jax.sharding`'s rules). The last
batch is padded by repeating its final record (the padding is not written).

Output: exactly `latents.encode_dataset`'s format (read by `LatentSource`, the
trainers' `data.source=latents`), plus `caption_sha1` / camera numbers when the
records carry them (imported datasets; `data.text_dir` looks the captions up).
Resumable: everything is written into `LATENTS.partial/` (`<split>/<feature>.npy`
memory maps, and `progress.json` holding how many records of each split are done,
updated after the rows are flushed); a rerun with the same arguments continues there
and the folder is renamed to `LATENTS` at the end. Throughput (pixel frames per
second, compilation excluded) is reported and kept in `meta.json`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from realcam_jax import sharding
from realcam_jax.atomic import atomic_file
from realcam_jax.data.latents import META_FILE, PASSTHROUGH, LatentDatasetError, anchor_videos
from realcam_jax.models.vae import VAEInputError, check_video

EXTRA_PASSTHROUGH = ("caption_sha1", "source_camera", "target_camera")
PROGRESS = "progress.json"


def make_encoder(vae, mesh):
  """u8 videos [N, T, H, W, 3] (N a multiple of the data rows) -> normalised latents (numpy)."""
  graphdef, state = nnx.split(vae)
  state_sh = sharding.state_shardings(state, mesh)
  state = jax.device_put(state, state_sh)
  video_sh = sharding.batch_sharding(mesh, 5)

  def encode(s, videos):
    x = videos.astype(np.float32) / 127.5 - 1.0
    return nnx.merge(graphdef, s).encode(x)

  fn = jax.jit(encode, in_shardings=(state_sh, video_sh), out_shardings=video_sh)
  return lambda videos: np.asarray(fn(state, jax.device_put(videos, video_sh)))


def _record_arrays(rec: Mapping, z_src, z_tgt, z_anchor=None) -> dict:
  keys = PASSTHROUGH + EXTRA_PASSTHROUGH
  out = dict(source_latent=z_src, target_latent=z_tgt,
             **{k: np.asarray(rec[k]) for k in keys if k in rec})
  if z_anchor is not None:
    out["anchor_latent"] = z_anchor
  return out


def _record_videos(rec: Mapping, anchor_depth: float | None) -> np.ndarray:
  """[1 + C (+ C), T, H, W, 3]: source, targets (and the anchor videos)."""
  parts = [np.asarray(rec["source_rgb"])[None], np.asarray(rec["target_rgb"])]
  if anchor_depth is not None:
    parts.append(anchor_videos(rec, anchor_depth))
  return np.concatenate(parts)


def encode_split(records: Sequence[Mapping], encode: Callable, folder: str, done: int,
                 batch_size: int, save_progress: Callable, progress=None,
                 anchor_depth: float | None = None) -> tuple[int, float]:
  """Encodes records[done:] into folder/<feature>.npy; returns (pixel frames, seconds after the
  first batch)."""
  n = len(records)
  os.makedirs(folder, exist_ok=True)
  outs: dict[str, np.ndarray] = {}
  frames, timed_frames, t0 = 0, 0, None
  for start in range(done, n, batch_size):
    idx = list(range(start, min(start + batch_size, n)))
    recs = [records[i] for i in idx]
    videos = [_record_videos(r, anchor_depth) for r in recs]
    per = len(videos[0])
    c = len(np.asarray(recs[0]["target_rgb"]))
    batch = np.concatenate(videos + [videos[-1]] * (batch_size - len(videos)))
    z = encode(batch)
    for j, (i, rec) in enumerate(zip(idx, recs)):
      zs = z[j * per:(j + 1) * per]
      values = _record_arrays(rec, zs[0], zs[1:1 + c],
                              zs[1 + c:] if anchor_depth is not None else None)
      for k, v in values.items():
        if k not in outs:
          path = os.path.join(folder, k + ".npy")
          outs[k] = (np.load(path, mmap_mode="r+") if os.path.exists(path) else
                     np.lib.format.open_memmap(path, mode="w+", dtype=v.dtype,
                                               shape=(n,) + v.shape))
        outs[k][i] = v
    for arr in outs.values():
      arr.flush()
    save_progress(idx[-1] + 1)
    count = len(recs) * per * batch.shape[1]
    frames += count
    if t0 is None:
      t0 = time.time()          # the first batch includes compilation
    else:
      timed_frames += count
    if progress is not None:
      progress(len(recs))
  return timed_frames, (time.time() - t0) if t0 is not None else 0.0


def encode_dataset(sources: Mapping[str, Sequence[Mapping]], vae, out_dir: str, *,
                   mesh_config, batch_size: int, meta: Mapping | None = None,
                   progress=None, log: Callable = print,
                   anchor_depth: float | None = None) -> dict:
  """Encodes every split into `out_dir` over all devices; returns the throughput stats.
  `anchor_depth` adds `anchor_latent` (as `latents.encode_dataset`)."""
  if anchor_depth is not None and not anchor_depth > 0:
    raise LatentDatasetError(f"anchor_depth={anchor_depth!r}: expected a plane distance > 0")
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(os.path.join(out_dir, META_FILE)):
    raise LatentDatasetError(f"{out_dir} already holds a latent dataset; delete it to re-encode")
  mesh = sharding.make_mesh(mesh_config)
  rows = mesh.shape["data"] * mesh.shape["fsdp"]
  first = next(iter(sources.values()))[0]
  per = (1 + (2 if anchor_depth is not None else 1) * np.asarray(first["target_rgb"]).shape[0])
  if (batch_size * per) % rows:
    raise LatentDatasetError(f"batch_size={batch_size} records = {batch_size * per} videos, "
                             f"not a multiple of the {rows} devices that split the batch")
  video = np.concatenate([np.asarray(first["source_rgb"])[None], first["target_rgb"]])
  try:
    check_video(video.astype(np.float32), spatial=vae.spatial_factor,
                temporal=vae.temporal_factor, channels=vae.in_channels, name="dataset clips")
  except VAEInputError as e:
    raise LatentDatasetError(f"{e} -- import with a --size and --frames the VAE accepts") from None
  work = out_dir + ".partial"
  os.makedirs(work, exist_ok=True)
  prog_path = os.path.join(work, PROGRESS)
  state = {}
  if os.path.exists(prog_path):
    with open(prog_path) as f:
      state = json.load(f)
    if state.get("sizes") != {k: len(v) for k, v in sources.items()}:
      raise LatentDatasetError(f"{work} was started on other records; delete it")
    if state.get("anchor_depth") != anchor_depth:
      raise LatentDatasetError(f"{work} was started with anchor_depth="
                               f"{state.get('anchor_depth')!r}, not {anchor_depth!r}; rerun "
                               "with the same --anchor-depth or delete it")
    log(f"resuming: {state['done']} records already encoded")
  state.setdefault("sizes", {k: len(v) for k, v in sources.items()})
  state.setdefault("anchor_depth", anchor_depth)
  state.setdefault("done", {k: 0 for k in sources})

  def save(split, count):
    state["done"][split] = count
    atomic_file(prog_path, lambda f: f.write(json.dumps(state).encode()))

  encode = make_encoder(vae, mesh)
  frames = secs = 0.0
  with jax.set_mesh(mesh):
    for split, records in sources.items():
      cb = (lambda k, s=split: progress(s, k)) if progress is not None else None
      f, t = encode_split(records, encode, os.path.join(work, split), state["done"][split],
                          batch_size, lambda c, s=split: save(s, c), cb, anchor_depth)
      frames, secs = frames + f, secs + t
  stats = dict(pixel_frames_per_second=frames / secs if secs > 0 else None, devices=mesh.size,
               device_kind=jax.devices()[0].device_kind, batch_size=batch_size)
  split0 = os.path.join(work, next(iter(sources)))
  features = sorted(f[:-4] for f in os.listdir(split0) if f.endswith(".npy"))
  shapes = {f: list(np.load(os.path.join(split0, f + ".npy"), mmap_mode="r").shape[1:])
            for f in features}
  info = dict(meta or {}, splits=state["sizes"], features=features, record_shapes=shapes,
              encode_stats=stats, anchor_depth=anchor_depth,
              vae=dict(spatial_factor=vae.spatial_factor, temporal_factor=vae.temporal_factor,
                       z_dim=vae.z_dim, latents_mean=list(vae.latents_mean),
                       latents_std=list(vae.latents_std), normalised=True))
  atomic_file(os.path.join(work, META_FILE),
              lambda f: f.write(json.dumps(info, indent=2, sort_keys=True, default=str).encode()))
  os.unlink(prog_path)
  if os.path.isdir(out_dir) and not os.listdir(out_dir):
    os.rmdir(out_dir)
  os.rename(work, out_dir)
  return stats

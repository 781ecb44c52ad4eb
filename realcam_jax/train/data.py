"""Batch sources for the latent-space trainers, selected by `config.data.source`.

  random   procedural latents and poses, deterministic per example index (tests,
           benchmarks, smoke runs): a grain pipeline, so its iterator state is
           checkpointable like the real one.
  latents  the encoded synthetic dataset (`realcam data encode`), read with grain.

Every source yields process-local numpy batches with the keys documented in
`realcam_jax.train.teacher`. Sharding by process: each process reads
`batch_size // process_count` examples of its own shard.
"""

from __future__ import annotations

import jax
import numpy as np

from realcam_jax.camera import intrinsics as intr
from realcam_jax.camera import presets


def _random_example(index: int, cfg) -> dict:
  rng = np.random.default_rng([cfg.seed, index])
  f, h, w, c = cfg.latent_frames, cfg.latent_height, cfg.latent_width, cfg.latent_channels
  src = rng.normal(size=(f, h, w, c)).astype(np.float32)
  # A target that depends on the source and the camera, so there is something to learn.
  shift = int(rng.integers(-2, 3))
  tgt = np.roll(src, shift, axis=2) * 0.8 + 0.2 * rng.normal(size=src.shape).astype(np.float32)
  name = ("pan_left", "pan_right", "static")[shift % 3]
  poses = presets.get_trajectory(name, max(f, 2))[:f].astype(np.float32)
  k = np.asarray(intr.intrinsics_from_fov(60.0, w * 8, h * 8), np.float32)
  return dict(source_latents=src, target_latents=tgt.astype(np.float32), target_poses=poses,
              intrinsics=k)


def make_iterator(config, *, split: str = "train"):
  """A checkpointable grain iterator of process-local batches for `config.data`."""
  import grain
  d = config.data
  n_proc, proc = jax.process_count(), jax.process_index()
  if config.train.batch_size % n_proc:
    raise ValueError(f"train.batch_size={config.train.batch_size} must be divisible by the "
                     f"number of processes ({n_proc})")
  local_batch = config.train.batch_size // n_proc
  if d.source == "random":
    ds = grain.MapDataset.range(d.num_examples).shuffle(seed=config.seed + 1).repeat()
    ds = ds[proc::n_proc].map(lambda i: _random_example(int(i), d))
    return iter(ds.batch(local_batch).to_iter_dataset())
  if d.source == "latents":
    from realcam_jax.data import latents
    return latents.make_iterator(config, split=split, shard_index=proc, shard_count=n_proc,
                                 batch_size=local_batch)
  raise ValueError(f"unknown data.source {d.source!r}; expected 'random' or 'latents'")

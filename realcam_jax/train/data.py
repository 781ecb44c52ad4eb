"""Batch sources for the latent-space trainers, selected by `config.data.source`.

  random   procedural latents and poses, deterministic per example index (tests,
           benchmarks, smoke runs): a grain pipeline, so its iterator state is
           checkpointable like the real one.
  latents  the encoded synthetic dataset (`realcam data encode`), read with grain.

Every source yields process-local numpy batches with the keys documented in
`realcam_jax.train.teacher`. Sharding by process: each process reads
`batch_size // process_count` examples: its contiguous block of each global batch
(the rows its devices hold, see `realcam_jax.scale.multihost.check_batch_layout`).
`sharded_batches` is that pipeline over any indexable examples (the random source,
the stored ODE pairs of `train.ode_pairs`).
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


def _global_row(j: int, local_batch: int, proc: int, n_proc: int) -> int:
  """Index in the global example stream of this process' j-th example.

  Global batch s is stream rows [s * B, (s + 1) * B); process p reads its block
  [p * b, (p + 1) * b) of it (b = B / processes), the rows its devices hold. So the
  global batch, and the trained parameters, do not depend on the process count.
  """
  return (j // local_batch) * local_batch * n_proc + proc * local_batch + j % local_batch


def local_batch_size(config) -> int:
  """This process' share of `train.batch_size` (which the process count must divide)."""
  n_proc = jax.process_count()
  if config.train.batch_size % n_proc:
    raise ValueError(f"train.batch_size={config.train.batch_size} must be divisible by the "
                     f"number of processes ({n_proc})")
  return config.train.batch_size // n_proc


def sharded_batches(config, num_examples: int, example_fn, *, seed: int):
  """A checkpointable grain iterator over `example_fn(i)`, i < num_examples: shuffled with
  `seed` (one fixed order, repeated forever), this process' rows of each global batch
  of `train.batch_size` (see `_global_row`), stacked into process-local batches."""
  import grain
  n_proc, proc = jax.process_count(), jax.process_index()
  local_batch = local_batch_size(config)
  order = grain.MapDataset.range(num_examples).shuffle(seed=seed).repeat()
  ds = grain.MapDataset.range(len(order) // n_proc).map(
      lambda j: example_fn(int(order[_global_row(j, local_batch, proc, n_proc)])))
  return iter(ds.batch(local_batch).to_iter_dataset())


def make_iterator(config, *, split: str = "train"):
  """A checkpointable grain iterator of process-local batches for `config.data`."""
  d = config.data
  n_proc, proc = jax.process_count(), jax.process_index()
  local_batch = local_batch_size(config)
  if d.source == "random":
    return sharded_batches(config, d.num_examples, lambda i: _random_example(i, d),
                           seed=config.seed + 1)
  if d.source == "latents":
    from realcam_jax.data import latents
    return latents.make_iterator(config, split=split, shard_index=proc, shard_count=n_proc,
                                 batch_size=local_batch)
  raise ValueError(f"unknown data.source {d.source!r}; expected 'random' or 'latents'")

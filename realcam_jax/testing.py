"""Helpers shared by tests and benchmarks."""

from __future__ import annotations

import jax


def perturb(params, scale: float = 0.1, seed: int = 1):
  """`params` plus `scale` x N(0, 1) noise on every leaf.

  Random non-zero weights everywhere: the zero-initialised output head and camera
  projections of a fresh model make every output zero, which would hide bugs.
  """
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(treedef, [leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
                                      for leaf, k in zip(leaves, keys)])


def random_dit(model_config, seed: int = 0, scale: float = 0.1):
  """(graphdef, params) of a `RealCamDiT` built from `model_config` with `perturb`ed weights."""
  from flax import nnx
  from realcam_jax.models.realcam import RealCamDiT
  from realcam_jax.train import state as st
  graphdef, params = st.split_model(RealCamDiT(model_config, rngs=nnx.Rngs(seed)))
  return graphdef, perturb(params, scale)


def key_with_exit(level: int, num_levels: int = 4):
  """The first rollout key (seeds 0, 1, ...) whose sampled exit level is `level`.

  Lets a test pin the denoising step at which a Self-Forcing rollout exits.
  """
  from realcam_jax.train import rollout
  for seed in range(1000):
    key = jax.random.key(seed)
    if int(rollout.sample_exit_level(rollout.split_rollout_key(key)[0], num_levels)) == level:
      return key
  raise ValueError(f"no key among seeds 0..999 exits at level {level} of {num_levels}")

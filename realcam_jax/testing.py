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

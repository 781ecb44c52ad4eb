"""Save / load a model state (converted or trained) with its resolved config.

Layout of a checkpoint directory:
  DIR/state/        Orbax (StandardCheckpointer) tree of the state's pure dict
  DIR/config.json   the resolved ml_collections config (`realcam_jax.config.to_json`)
  DIR/meta.json     free-form provenance (source file, format, ...)

Writes go to a temporary sibling directory that is renamed to DIR at the end,
so a failure leaves nothing half-written; an existing non-empty DIR is only
replaced with `force=True`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from realcam_jax import config as config_lib
from realcam_jax.atomic import atomic_dir

STATE_DIR = "state"
CONFIG_FILE = "config.json"
META_FILE = "meta.json"


class CheckpointError(ValueError):
  """A checkpoint directory is missing, incomplete, or would be overwritten."""


def check_out_dir(out_dir: str, force: bool = False) -> None:
  """Raises CheckpointError if `out_dir` exists, is non-empty and `force` is False."""
  if os.path.exists(out_dir):
    if not os.path.isdir(out_dir):
      raise CheckpointError(f"output {out_dir!r} exists and is not a directory")
    if os.listdir(out_dir) and not force:
      raise CheckpointError(f"output directory {out_dir!r} exists and is not empty; "
                            f"pass --force to replace it")


def _pure(state: nnx.State) -> dict:
  def leaf(x):
    return x if isinstance(x, (jax.Array, np.ndarray, jax.ShapeDtypeStruct)) else np.asarray(x)
  return jax.tree.map(leaf, nnx.to_pure_dict(state))


def save_state(out_dir: str, state: nnx.State, config: ml_collections.ConfigDict | None = None,
               *, force: bool = False, meta: Mapping[str, Any] | None = None) -> str:
  """Writes `state` (+ config JSON, meta JSON) to `out_dir` atomically. Returns the path."""
  out_dir = os.path.abspath(out_dir)
  check_out_dir(out_dir, force)
  with atomic_dir(out_dir) as tmp:
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(os.path.join(tmp, STATE_DIR), _pure(state))
      ckptr.wait_until_finished()
    if config is not None:
      with open(os.path.join(tmp, CONFIG_FILE), "w") as f:
        f.write(config_lib.to_json(config))
    with open(os.path.join(tmp, META_FILE), "w") as f:
      json.dump(dict(meta or {}), f, indent=2, sort_keys=True, default=str)
  return out_dir


def _require(path: str, what: str) -> str:
  if not os.path.exists(path):
    raise CheckpointError(f"checkpoint {os.path.dirname(path)!r} has no {what} ({path!r} is "
                          f"missing); expected a directory written by `realcam convert` or "
                          f"orbax_io.save_state")
  return path


def load_state(ckpt_dir: str, abstract_state: nnx.State, shardings: Any = None) -> nnx.State:
  """Restores a state saved by `save_state` into the structure of `abstract_state`.

  Args:
    ckpt_dir: checkpoint directory.
    abstract_state: target (e.g. from `nnx.eval_shape`), giving shapes and dtypes.
    shardings: optional tree like `abstract_state` with a `jax.sharding.Sharding` per
      variable (e.g. `sharding.state_shardings(...)`); arrays are restored sharded.
  """
  path = _require(os.path.join(os.path.abspath(ckpt_dir), STATE_DIR), "state")
  flat_abs = nnx.to_flat_state(abstract_state)
  shard_of = {}
  if shardings is not None:
    is_sharding = lambda x: isinstance(x, jax.sharding.Sharding)  # noqa: E731
    shard_leaves = jax.tree.leaves(shardings, is_leaf=is_sharding)
    if len(shard_leaves) != len(flat_abs):
      raise ValueError(f"shardings has {len(shard_leaves)} leaves, the state {len(flat_abs)}")
    shard_of = {p: s for (p, _), s in zip(flat_abs, shard_leaves)}
  target = {}
  for p, var in flat_abs:
    value = var.get_value() if isinstance(var, nnx.Variable) else var
    node = target
    for k in p[:-1]:
      node = node.setdefault(k, {})
    node[p[-1]] = jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=shard_of.get(p))
  try:
    with ocp.StandardCheckpointer() as ckptr:
      restored = ckptr.restore(path, target)
  except (ValueError, KeyError, FileNotFoundError) as e:
    raise CheckpointError(f"checkpoint {ckpt_dir!r} does not match the model: {e}") from e
  out = []
  for p, var in flat_abs:
    node = restored
    for k in p:
      node = node[k]
    out.append((p, var.replace(value=node)))
  return nnx.from_flat_state(out)


def load_config(ckpt_dir: str) -> ml_collections.ConfigDict:
  """The resolved config saved with a checkpoint."""
  with open(_require(os.path.join(os.path.abspath(ckpt_dir), CONFIG_FILE), "config")) as f:
    return config_lib.from_json(f.read())


def load_meta(ckpt_dir: str) -> dict:
  with open(_require(os.path.join(os.path.abspath(ckpt_dir), META_FILE), "meta")) as f:
    return json.load(f)

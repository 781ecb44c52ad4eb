"""Training checkpoints: an Orbax `CheckpointManager` with named items.

Items per step:
  state   the train state as a pytree of arrays (restored into an abstract target
          that may carry shardings, so each process reads only its shards)
  config  the resolved config as JSON
  data    the grain data-iterator state (optional)

Saves are atomic (Orbax writes to a temporary directory and renames), so a kill
mid-save leaves the previous checkpoint as the latest valid one.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

ITEMS = ("state", "config", "data")


def _handlers(with_data: bool):
  handlers = {"state": ocp.StandardCheckpointHandler(), "config": ocp.JsonCheckpointHandler()}
  if with_data:
    import grain
    handlers["data"] = grain.checkpoint.CheckpointHandler()
  return handlers


class Checkpointer:
  """Saves and restores (state, config, data-iterator) triples by step."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, with_data: bool = True,
               async_save: bool = True):
    # Bucket paths (gs://...) stay as they are; Orbax writes there directly.
    self.directory = directory if "://" in str(directory) else os.path.abspath(directory)
    self.with_data = with_data
    self._mgr = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save),
        item_handlers=_handlers(with_data))

  def latest_step(self) -> int | None:
    return self._mgr.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._mgr.all_steps())

  def save(self, step: int, state: Any, config_dict: dict, data_iter=None, *,
           force: bool = False) -> bool:
    items = dict(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config_dict))
    if self.with_data and data_iter is not None:
      import grain
      items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    return self._mgr.save(step, args=ocp.args.Composite(**items), force=force)

  def state_keys(self, step: int | None = None) -> set[str]:
    """Top-level names in the saved state of `step` (default the latest) that hold arrays
    (a field saved as None, such as switched-off EMA weights, is left out); metadata only."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    return {k for k, v in self._mgr.item_metadata(step)["state"].items() if v is not None}

  def restore(self, abstract_state: Any, step: int | None = None, data_iter=None):
    """Restores into `abstract_state` (ShapeDtypeStructs, optionally with shardings).

    Returns (state, config_dict, step). `data_iter`, when given, is restored in place.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    items = dict(state=ocp.args.StandardRestore(abstract_state), config=ocp.args.JsonRestore())
    if self.with_data and data_iter is not None:
      import grain
      items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    out = self._mgr.restore(step, args=ocp.args.Composite(**items))
    return out["state"], out["config"], step

  def wait(self):
    self._mgr.wait_until_finished()

  def close(self):
    self._mgr.wait_until_finished()
    self._mgr.close()


def abstract_like(tree, shardings=None):
  """ShapeDtypeStructs for a concrete or abstract pytree, with optional shardings.

  `shardings` may have NamedShardings where `tree` has nnx Variables (as produced by
  `sharding.state_shardings`); the Variables are kept, holding the abstract value.
  """
  from flax import nnx

  def one(x, s=None):
    if isinstance(x, nnx.Variable):
      v = x.get_value()
      return x.replace(jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s))
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)

  is_var = lambda x: isinstance(x, nnx.Variable)
  if shardings is None:
    return jax.tree.map(one, tree, is_leaf=is_var)
  return jax.tree.map(one, tree, shardings, is_leaf=is_var)

"""Start part of a model from a converted checkpoint (`realcam convert`, `orbax_io` layout).

`load_part(ckpt_dir, params, shardings, prefix=..., paths=...)` reads the variables
`paths` (paths inside the checkpoint, e.g. `('blocks', 'attn1', 'to_q', 'kernel')`) into
`params[prefix + path]`; every other variable of `params` keeps its value. Before
anything is read, the checkpoint's tree (Orbax metadata: names and shapes only) is
checked against the model: a missing, unexpected or mis-shaped variable fails with a
`CheckpointError` that lists each one with both shapes. Arrays are restored directly
into the given shardings (abstract targets carrying shardings), so each process reads
only its shards; floating dtypes are cast to the model's (f32 files into bf16 params).
`check_part` runs the same checks on an abstract model (before any weight exists).
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import jax
import orbax.checkpoint as ocp
from flax import nnx

from realcam_jax.ckpt import orbax_io
from realcam_jax.ckpt.orbax_io import CheckpointError

# Model fields that change parameter shapes or the tree (named in mismatch errors).
_SHAPE_FIELDS = ("size", "in_channels", "out_channels", "dim", "ffn_dim", "num_heads",
                 "num_layers", "text_dim", "freq_dim", "patch_size", "cross_attn_norm")


def _fmt(shape) -> str:
  return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def _name(path) -> str:
  return "/".join(str(p) for p in path)


def _flatten(tree, prefix=()) -> dict[tuple, Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, prefix + (str(k),)))
    return out
  return {prefix: tree}


def _check_dir(ckpt_dir: str, setting: str) -> str:
  """The checkpoint's state directory; CheckpointError saying what `ckpt_dir` is instead."""
  expected = ("expected a directory written by `realcam convert --model dit` (state/, "
              "config.json, meta.json)")
  if not os.path.exists(ckpt_dir):
    raise CheckpointError(f"{setting}: {ckpt_dir!r} does not exist; {expected}")
  if not os.path.isdir(ckpt_dir):
    hint = (" (convert it first: realcam convert --model dit --format wan|diffusers "
            "--weights FILE --config configs/dit.py:SIZE --out DIR)"
            if ckpt_dir.endswith((".safetensors", ".json", ".pth")) else "")
    raise CheckpointError(f"{setting}: {ckpt_dir!r} is a file, not a checkpoint directory; "
                          f"{expected}{hint}")
  state = os.path.join(ckpt_dir, orbax_io.STATE_DIR)
  if not os.path.isdir(state):
    hint = (" (it looks like a training workdir: to continue that run, pass it as --workdir)"
            if os.path.isdir(os.path.join(ckpt_dir, "ckpt")) else "")
    raise CheckpointError(f"{setting}: {ckpt_dir!r} has no {orbax_io.STATE_DIR}/ directory; "
                          f"{expected}{hint}")
  return state


def _config_hint(ckpt_dir: str, model_cfg) -> str:
  """'converted with dim 32 ...; this model has dim 256 ...' from the saved config, if any."""
  if model_cfg is None:
    return ""
  try:
    saved = orbax_io.load_config(ckpt_dir).model
  except (CheckpointError, OSError, ValueError, AttributeError, KeyError):
    return ""
  diff = [(f, saved.get(f), model_cfg.get(f)) for f in _SHAPE_FIELDS
          if saved.get(f) is not None
          and tuple(_listify(saved.get(f))) != tuple(_listify(model_cfg.get(f)))]
  if not diff:
    return ""
  ours = ", ".join(f"{f}={b}" for f, _, b in diff)
  theirs = ", ".join(f"{f}={a}" for f, a, _ in diff)
  return (f"\nthe checkpoint was converted with model {theirs}; this model has {ours}: "
          f"convert the weights with the matching config (configs/dit.py:SIZE) or change "
          f"--config.model.*")


def _listify(v):
  return list(v) if isinstance(v, (list, tuple)) else [v]


def _wanted(params, prefix, paths) -> tuple[dict, set]:
  """({checkpoint path: (index in the flat params, variable)}, the paths as str tuples)."""
  n = len(prefix)
  wanted = {}
  for i, (p, var) in enumerate(nnx.to_flat_state(params)):
    p = tuple(str(k) for k in p)
    if p[:n] == tuple(prefix):
      wanted[p[n:]] = (i, var)
  paths = {tuple(str(k) for k in p) for p in paths}
  absent = sorted(paths - set(wanted))
  if absent:
    raise ValueError(f"paths not in the model under {_name(prefix)!r}: "
                     f"{[_name(p) for p in absent]}")
  return wanted, paths


def check_part(ckpt_dir: str, params: nnx.State, *, prefix: tuple[str, ...],
               paths: Iterable[tuple[str, ...]], what: str, setting: str = "init_from",
               model_cfg=None) -> str:
  """Checks that `ckpt_dir` holds exactly `paths` with the shapes of `params[prefix + p]`
  (`params` may be abstract: only shapes are read); reads no array. Returns the state
  directory. Arguments and errors as `load_part`."""
  ckpt_dir = os.path.abspath(ckpt_dir)
  state_dir = _check_dir(ckpt_dir, setting)
  try:
    meta = orbax_io.load_meta(ckpt_dir)
  except (CheckpointError, OSError, ValueError):
    meta = {}
  if meta.get("model") not in (None, "dit"):
    raise CheckpointError(f"{setting}: {ckpt_dir!r} holds converted {meta['model']!r} weights, "
                          f"not {what}; convert the DiT file with realcam convert --model dit")
  wanted, paths = _wanted(params, prefix, paths)
  try:
    with ocp.StandardCheckpointer() as ckptr:
      stored = _flatten(dict(ckptr.metadata(state_dir).item_metadata.tree))
  except (ValueError, KeyError, FileNotFoundError, OSError, AttributeError) as e:
    raise CheckpointError(f"{setting}: cannot read the checkpoint tree of {ckpt_dir!r}: {e}"
                          ) from e
  missing, unexpected, misshaped = [], [], []
  for p in sorted(paths):
    shape = tuple(wanted[p][1].get_value().shape)
    if p not in stored:
      missing.append(f"{_name(p)}: the model needs {_fmt(shape)}")
    elif tuple(stored[p].shape) != shape:
      misshaped.append(f"{_name(p)}: checkpoint {_fmt(stored[p].shape)}, model {_fmt(shape)}")
  for p in sorted(set(stored) - paths):
    unexpected.append(f"{_name(p)} {_fmt(getattr(stored[p], 'shape', ()))}: not a parameter "
                      f"of {what}")
  if missing or unexpected or misshaped:
    lines = [f"{setting}: checkpoint {ckpt_dir!r} does not fit {what}: {len(missing)} missing, "
             f"{len(unexpected)} unexpected, {len(misshaped)} mis-shaped parameter(s)"]
    for title, items in (("missing (the model needs them, the checkpoint lacks them)", missing),
                         ("unexpected (in the checkpoint, not in the model)", unexpected),
                         ("mis-shaped", misshaped)):
      if items:
        lines.append(f"{title}:")
        lines.extend(f"  {item}" for item in items)
    raise CheckpointError("\n".join(lines) + _config_hint(ckpt_dir, model_cfg))
  return state_dir


def load_part(ckpt_dir: str, params: nnx.State, shardings: Any, *, prefix: tuple[str, ...],
              paths: Iterable[tuple[str, ...]], what: str, setting: str = "init_from",
              model_cfg=None) -> nnx.State:
  """`params` with `params[prefix + p]` read from the checkpoint for every `p` in `paths`.

  Args:
    ckpt_dir: an `orbax_io` directory (e.g. `realcam convert --model dit --out DIR`).
    params: the model's params (concrete, e.g. a fresh seed init), an nnx.State.
    shardings: a tree like `params` with a `jax.sharding.Sharding` per variable.
    prefix: where the checkpoint's tree sits inside `params` (e.g. `('backbone',)`).
    paths: the checkpoint paths to read; the checkpoint must hold exactly these.
    what: what the checkpoint should be, for errors ("the Wan2.1 DiT backbone").
    setting: the config field that named `ckpt_dir`, for errors.
    model_cfg: optional model config; a mismatch error then names the config fields that
      differ from the ones saved with the checkpoint.

  Raises:
    CheckpointError naming the directory and every missing, unexpected and mis-shaped
    variable (checkpoint shape and model shape).
  """
  state_dir = check_part(ckpt_dir, params, prefix=prefix, paths=paths, what=what,
                         setting=setting, model_cfg=model_cfg)
  wanted, paths = _wanted(params, prefix, paths)
  flat = list(nnx.to_flat_state(params))
  is_sharding = lambda x: isinstance(x, jax.sharding.Sharding)  # noqa: E731
  shard_leaves = jax.tree.leaves(shardings, is_leaf=is_sharding)
  if len(shard_leaves) != len(flat):
    raise ValueError(f"shardings has {len(shard_leaves)} leaves, params {len(flat)}")
  target: dict = {}
  for p in paths:
    i, var = wanted[p]
    value = var.get_value()
    node = target
    for k in p[:-1]:
      node = node.setdefault(k, {})
    node[p[-1]] = jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=shard_leaves[i])
  try:
    with ocp.StandardCheckpointer() as ckptr:
      restored = _flatten(ckptr.restore(state_dir, target))
  except (ValueError, KeyError, FileNotFoundError, OSError) as e:
    raise CheckpointError(f"{setting}: cannot restore {ckpt_dir!r}: {e}") from e
  n = len(prefix)
  out = []
  for p, var in flat:
    key = tuple(str(k) for k in p)
    inside = key[n:] if key[:n] == tuple(prefix) else None
    out.append((p, var.replace(value=restored[inside]) if inside in paths else var))
  return nnx.from_flat_state(out)

"""Generic pretrained-weight conversion: safetensors in, checked `nnx.State` out.

A model-specific module supplies a `rename(source_key)` function; this module
applies it to every tensor of a file and checks the result against the abstract
state of our model (`nnx.eval_shape`). Nothing is returned unless every key,
shape and dtype fits.

`rename(key)` returns one of:
  None                      the key is not used by the model (reported as unexpected);
  (path, transform)         '/'-joined path of one of our variables, e.g.
                            'proj_out/kernel', and an optional array transform
                            (e.g. `np.transpose` of a torch Linear weight);
  (path, transform, layer)  the same for a *stacked* variable (layers built with
                            `nnx.vmap`, leading axis L): the transformed tensor is
                            written at index `layer` of that axis. All L layers
                            must be present exactly once.

Dtypes: a floating-point source is cast to the parameter's floating dtype (e.g.
bf16 files into f32 params); any other kind mismatch (int into float, ...) is an
error.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Callable, Mapping

import ml_dtypes
import numpy as np
from flax import nnx

Transform = Callable[[np.ndarray], np.ndarray]
Rename = Callable[[str], "tuple[str, Transform | None] | tuple[str, Transform | None, int] | None"]
SourceName = Callable[[str, "int | None"], str]


class ConversionError(ValueError):
  """A weight file does not fit the model (missing / unexpected / mis-shaped keys) or is
  unreadable."""


# ----------------------------------------------------------------------------- safetensors

_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}


def _read_one(path: str) -> dict[str, np.ndarray]:
  """Reads one .safetensors file (memory-mapped; bf16/fp8 via ml_dtypes)."""
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      n = int.from_bytes(f.read(8), "little")
      if n <= 0 or n + 8 > size:
        raise ValueError(f"header length {n} does not fit a file of {size} bytes")
      header = json.loads(f.read(n))
  except (OSError, ValueError, UnicodeDecodeError) as e:
    raise ConversionError(f"cannot read safetensors file {path!r}: {e}") from e
  header.pop("__metadata__", None)
  if not header:
    return {}
  data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
  out = {}
  for key, info in header.items():
    try:
      dtype = np.dtype(_ST_DTYPES[info["dtype"]])
      start, end = info["data_offsets"]
      shape = tuple(info["shape"])
      arr = data[start:end].view(dtype).reshape(shape)
    except (KeyError, ValueError, TypeError) as e:
      raise ConversionError(f"safetensors file {path!r}: tensor {key!r} has an unsupported or "
                            f"corrupt entry {info}: {e}") from e
    out[key] = arr
  return out


def load_safetensors(path: str) -> dict[str, np.ndarray]:
  """Loads tensors from a .safetensors file, a sharded `*.safetensors.index.json`, or a
  directory holding exactly one of these. Arrays are memory-mapped, read-only."""
  if not os.path.exists(path):
    raise ConversionError(f"weights file {path!r} does not exist")
  if os.path.isdir(path):
    names = sorted(os.listdir(path))
    index = [n for n in names if n.endswith(".safetensors.index.json")]
    files = [n for n in names if n.endswith(".safetensors")]
    if len(index) == 1:
      return load_safetensors(os.path.join(path, index[0]))
    if len(files) == 1:
      return load_safetensors(os.path.join(path, files[0]))
    raise ConversionError(f"directory {path!r} must hold one .safetensors file or one "
                          f"*.safetensors.index.json; found {index + files or 'neither'}")
  if path.endswith(".json"):
    try:
      with open(path) as f:
        weight_map = json.load(f)["weight_map"]
    except (OSError, ValueError, KeyError) as e:
      raise ConversionError(f"cannot read safetensors index {path!r} (expected a JSON object "
                            f"with a 'weight_map'): {e}") from e
    out = {}
    for shard in sorted(set(weight_map.values())):
      out.update(_read_one(os.path.join(os.path.dirname(path), shard)))
    missing = sorted(set(weight_map) - set(out))
    if missing:
      raise ConversionError(f"index {path!r} lists tensors absent from its shards: {missing}")
    return out
  return _read_one(path)


# ----------------------------------------------------------------------------- conversion

def _fmt(shape) -> str:
  return "[" + ", ".join(str(d) for d in shape) + "]"


def _leaf_spec(v) -> tuple[tuple[int, ...], np.dtype]:
  value = v.get_value() if isinstance(v, nnx.Variable) else v
  return tuple(value.shape), np.dtype(value.dtype)


def _is_stacked(var) -> bool:
  """Whether a variable was built with a leading 'layers' axis (logical axis metadata)."""
  md = var.get_metadata() if isinstance(var, nnx.Variable) else {}
  axes = md.get("out_sharding") or ()
  return len(axes) > 0 and axes[0] == "layers"


def _is_float(dtype: np.dtype) -> bool:
  try:
    ml_dtypes.finfo(dtype)
    return True
  except ValueError:
    return False


def _storable(src: np.dtype, dst: np.dtype) -> bool:
  """Floats cast to any float dtype; anything else must match exactly."""
  return (_is_float(src) and _is_float(dst)) or src == dst


def convert_state(flat: Mapping[str, np.ndarray], rename: Rename, abstract_state: nnx.State, *,
                  source: str, source_name: SourceName | None = None) -> nnx.State:
  """Renames, transforms, stacks and checks source tensors into an `nnx.State`.

  Args:
    flat: source tensors by name (e.g. from `load_safetensors`).
    rename: source key -> (path, transform[, layer]) or None; see module docstring.
    abstract_state: the target state, e.g. `nnx.state(nnx.eval_shape(make_model))`.
    source: what the tensors are (file name, format) for error messages.
    source_name: (path, layer or None) -> the source key a missing variable would
      have, for error messages; default shows our path.

  Returns:
    An `nnx.State` like `abstract_state` holding NumPy arrays of its dtypes.

  Raises:
    ConversionError listing every missing, unexpected, mis-shaped and wrongly typed key.
  """
  expected = {"/".join(str(p) for p in path): v for path, v in nnx.to_flat_state(abstract_state)}
  name_of = source_name or (lambda path, layer: path if layer is None else f"{path}[{layer}]")
  plain: dict[str, tuple[str, np.ndarray]] = {}
  stacked: dict[str, dict[int, tuple[str, np.ndarray]]] = collections.defaultdict(dict)
  unexpected, misshaped, badtype = [], [], []

  for key in sorted(flat):
    r = rename(key)
    if r is None:
      unexpected.append(f"{key} {_fmt(flat[key].shape)}: not a parameter of this model")
      continue
    path, fn, layer = (tuple(r) + (None,))[:3]
    if path not in expected:
      unexpected.append(f"{key} {_fmt(flat[key].shape)}: maps to {path!r}, which this model "
                        f"does not have")
      continue
    arr = flat[key]
    try:
      arr = fn(arr) if fn is not None else arr
    except (ValueError, IndexError) as e:
      misshaped.append(f"{key}: got {_fmt(flat[key].shape)}, cannot transform it for "
                       f"{path!r}: {e}")
      continue
    if layer is None:
      if path in plain:
        unexpected.append(f"{key}: duplicate of {plain[path][0]} (both map to {path!r})")
      plain[path] = (key, arr)
    else:
      if layer in stacked[path]:
        unexpected.append(f"{key}: duplicate of {stacked[path][layer][0]} "
                          f"(both map to {path!r} layer {layer})")
      stacked[path][layer] = (key, arr)

  missing, values = [], {}
  for path, var in expected.items():
    shape, dtype = _leaf_spec(var)
    if path in stacked:
      pieces = stacked[path]
      num_layers = shape[0] if shape else 0
      for i in sorted(set(range(num_layers)) - set(pieces)):
        missing.append(f"{name_of(path, i)}: expected {_fmt(shape[1:])} for {path!r} layer {i}")
      for i in sorted(set(pieces) - set(range(num_layers))):
        unexpected.append(f"{pieces[i][0]}: layer {i}, but the model has {num_layers} layers")
      entries = [(pieces[i], shape[1:]) for i in range(num_layers) if i in pieces]
      ok = len(entries) == num_layers
    elif path in plain:
      entries, ok = [(plain[path], shape)], True
    elif _is_stacked(var):
      missing.append(f"{name_of(path, None)}: expected {_fmt(shape[1:])} for each of the "
                     f"{shape[0]} layers of {path!r}; none found")
      continue
    else:
      missing.append(f"{name_of(path, None)}: expected {_fmt(shape)} for {path!r}")
      continue
    for (key, arr), want in entries:
      if tuple(arr.shape) != tuple(want):
        src = _fmt(flat[key].shape)
        got = _fmt(arr.shape) + ("" if src == _fmt(arr.shape) else f" (file {src})")
        misshaped.append(f"{key}: expected {_fmt(want)} for {path!r}, got {got}")
        ok = False
      elif not _storable(np.dtype(arr.dtype), dtype):
        badtype.append(f"{key}: dtype {arr.dtype} cannot be stored in {path!r} ({dtype})")
        ok = False
    if ok:  # cheap views until every check passed; copies happen here
      if path in plain:
        values[path] = np.asarray(plain[path][1], dtype=dtype)
      else:
        values[path] = np.stack([np.asarray(pieces[i][1], dtype=dtype)
                                 for i in range(num_layers)])

  if missing or unexpected or misshaped or badtype:
    lines = [f"cannot convert {source}: {len(missing)} missing, {len(unexpected)} unexpected, "
             f"{len(misshaped)} mis-shaped, {len(badtype)} wrongly typed key(s)"]
    for title, items in (("missing (the model needs them, the file lacks them)", missing),
                         ("unexpected (in the file, not used by the model)", unexpected),
                         ("mis-shaped", misshaped), ("wrong dtype", badtype)):
      if items:
        lines.append(f"{title}:")
        lines.extend(f"  {item}" for item in items)
    raise ConversionError("\n".join(lines))

  out = [(path, var.replace(value=values["/".join(str(p) for p in path)]))
         for path, var in nnx.to_flat_state(abstract_state)]
  return nnx.from_flat_state(out)

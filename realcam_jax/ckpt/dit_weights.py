"""Rename tables: Wan2.1 DiT weights (diffusers or original Wan layout) -> `WanDiT` state.

Diffusers layout (`WanTransformer3DModel.state_dict()`), e.g.
  patch_embedding.weight                             -> patch_embedding/kernel  (Conv3d)
  condition_embedder.time_embedder.linear_1.weight   -> .../time_embedder/linear_1/kernel
  blocks.N.attn1.to_q.weight                         -> blocks/attn1/to_q/kernel [layer N]
  blocks.N.ffn.net.0.proj.weight                     -> blocks/ffn/fc1/kernel [layer N]
  blocks.N.scale_shift_table, scale_shift_table, proj_out.weight, ...

Original Wan layout (the `Wan2.1-T2V-*` release, `diffusion_pytorch_model*.safetensors`
of the Wan-AI repos): mapped to diffusers names first. The table below was derived
from diffusers' own converter, `convert_wan_transformer_to_diffusers` in
`diffusers/loaders/single_file_utils.py` (diffusers 0.42): time_embedding.{0,2} ->
time_embedder.linear_{1,2}, text_embedding.{0,2} -> text_embedder.linear_{1,2},
time_projection.1 -> time_proj, self_attn/cross_attn -> attn1/attn2,
.q/.k/.v/.o -> .to_q/.to_k/.to_v/.to_out.0, blocks.N.norm3 (Wan's affine
cross-attention norm) -> blocks.N.norm2, ffn.0/ffn.2 -> ffn.net.0.proj/ffn.net.2,
blocks.N.modulation -> scale_shift_table, head.head -> proj_out,
head.modulation -> scale_shift_table; a `model.diffusion_model.` prefix is dropped.

Transforms: torch Linear weight [out, in] -> kernel [in, out]; Conv3d weight
[D, C, pt, ph, pw] -> kernel [pt, ph, pw, C, D]; norms' weight -> scale.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

from realcam_jax.ckpt.convert_common import Rename, SourceName

FORMATS = ("diffusers", "wan")

# diffusers module name -> (our module path, kind). kind picks the param names + transform.
_TOP = {
    "patch_embedding": ("patch_embedding", "conv3d"),
    "condition_embedder.time_embedder.linear_1": ("condition_embedder/time_embedder/linear_1",
                                                  "linear"),
    "condition_embedder.time_embedder.linear_2": ("condition_embedder/time_embedder/linear_2",
                                                  "linear"),
    "condition_embedder.time_proj": ("condition_embedder/time_proj", "linear"),
    "condition_embedder.text_embedder.linear_1": ("condition_embedder/text_embedder/linear_1",
                                                  "linear"),
    "condition_embedder.text_embedder.linear_2": ("condition_embedder/text_embedder/linear_2",
                                                  "linear"),
    "proj_out": ("proj_out", "linear"),
    "scale_shift_table": ("scale_shift_table", "tensor"),
}
_BLOCK = {
    **{f"{a}.{p}": (f"{a}/{p}", "linear") for a in ("attn1", "attn2")
       for p in ("to_q", "to_k", "to_v")},
    **{f"{a}.to_out.0": (f"{a}/to_out", "linear") for a in ("attn1", "attn2")},
    **{f"{a}.{n}": (f"{a}/{n}", "norm") for a in ("attn1", "attn2") for n in ("norm_q", "norm_k")},
    "norm2": ("norm2", "norm"),
    "ffn.net.0.proj": ("ffn/fc1", "linear"),
    "ffn.net.2": ("ffn/fc2", "linear"),
    "cond_proj": ("cond_proj", "linear"),  # our hook; absent from Wan files
    "scale_shift_table": ("scale_shift_table", "tensor"),
}
# kind -> {source param suffix: (our param name, transform)}
_PARAMS: dict[str, dict[str, tuple[str, Callable | None]]] = {
    "linear": {"weight": ("kernel", np.transpose), "bias": ("bias", None)},
    "conv3d": {"weight": ("kernel", lambda w: np.transpose(w, (2, 3, 4, 1, 0))),
               "bias": ("bias", None)},
    "norm": {"weight": ("scale", None), "bias": ("bias", None)},
}

# Original Wan name pieces -> diffusers (see module docstring for the source).
_WAN_TOP = {
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
    "patch_embedding": "patch_embedding",
}
_WAN_BLOCK = {
    **{f"{w}.{p}": f"{d}.to_{p}" for w, d in (("self_attn", "attn1"), ("cross_attn", "attn2"))
       for p in ("q", "k", "v")},
    **{f"{w}.o": f"{d}.to_out.0" for w, d in (("self_attn", "attn1"), ("cross_attn", "attn2"))},
    **{f"{w}.{n}": f"{d}.{n}" for w, d in (("self_attn", "attn1"), ("cross_attn", "attn2"))
       for n in ("norm_q", "norm_k")},
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    "modulation": "scale_shift_table",
    "cond_proj": "cond_proj",
}
_BLOCK_RE = re.compile(r"blocks\.(\d+)\.(.+)")


def _split_module(key: str, table: dict) -> tuple[str, str] | None:
  """'a.b.weight' -> ('a.b', 'weight') if 'a.b' is in table, or (key, '') for bare tensors."""
  if key in table:
    return key, ""
  module, _, param = key.rpartition(".")
  return (module, param) if module in table else None


def wan_to_diffusers_key(key: str) -> str | None:
  """Original Wan key -> diffusers key (None if it has no counterpart)."""
  key = key.removeprefix("model.diffusion_model.")
  m = _BLOCK_RE.fullmatch(key)
  table, prefix, rest = (_WAN_BLOCK, f"blocks.{m[1]}.", m[2]) if m else (_WAN_TOP, "", key)
  split = _split_module(rest, table)
  if split is None:
    return None
  module, param = split
  return prefix + table[module] + (f".{param}" if param else "")


def diffusers_rename(key: str):
  """Diffusers key -> (our path, transform[, layer]) or None (see convert_common)."""
  m = _BLOCK_RE.fullmatch(key)
  table, prefix, rest, layer = ((_BLOCK, "blocks/", m[2], int(m[1])) if m
                                else (_TOP, "", key, None))
  split = _split_module(rest, table)
  if split is None:
    return None
  module, param = split
  path, kind = table[module]
  if kind == "tensor":
    if param:
      return None
    out = (prefix + path, None)
  else:
    if param not in _PARAMS[kind]:
      return None
    name, fn = _PARAMS[kind][param]
    out = (f"{prefix}{path}/{name}", fn)
  return out if layer is None else out + (layer,)


def wan_rename(key: str):
  """Original Wan key -> (our path, transform[, layer]) or None."""
  d = wan_to_diffusers_key(key)
  return None if d is None else diffusers_rename(d)


def diffusers_source_name(path: str, layer: int | None) -> str:
  """Our path -> the diffusers key it comes from (for error messages)."""
  stacked = path.startswith("blocks/")
  rest = path.removeprefix("blocks/")
  table = _BLOCK if stacked else _TOP
  prefix = f"blocks.{'N' if layer is None else layer}." if stacked else ""
  for src, (ours, kind) in table.items():
    if kind == "tensor" and rest == ours:
      return prefix + src
    for param, (name, _) in _PARAMS.get(kind, {}).items():
      if rest == f"{ours}/{name}":
        return f"{prefix}{src}.{param}"
  return path


def wan_source_name(path: str, layer: int | None) -> str:
  """Our path -> the original Wan key it comes from (for error messages)."""
  d = diffusers_source_name(path, layer)
  m = re.fullmatch(r"blocks\.(\d+|N)\.(.+)", d)
  table, prefix, rest = (_WAN_BLOCK, f"blocks.{m[1]}.", m[2]) if m else (_WAN_TOP, "", d)
  inverse = {v: k for k, v in table.items()}
  split = _split_module(rest, inverse)
  if split is None:
    return d
  module, param = split
  return prefix + inverse[module] + (f".{param}" if param else "")


def detect_format(keys) -> str | None:
  """'diffusers', 'wan' or None from the key names of a file."""
  keys = list(keys)
  if any(".attn1." in k or k.startswith("condition_embedder.") for k in keys):
    return "diffusers"
  if any(".self_attn." in k or k.startswith(("head.head", "model.diffusion_model.")) for k in keys):
    return "wan"
  return None


def rename_for(fmt: str) -> tuple[Rename, SourceName]:
  """(rename, source_name) functions for a weight layout name."""
  table = {"diffusers": (diffusers_rename, diffusers_source_name),
           "wan": (wan_rename, wan_source_name)}
  if fmt not in table:
    raise ValueError(f"unknown weight format {fmt!r}; expected one of {FORMATS}")
  return table[fmt]

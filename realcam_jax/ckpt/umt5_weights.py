"""Rename tables: umT5 encoder weights (Wan's .pth or a transformers folder) -> `UMT5Encoder`.

Wan layout (`models_t5_umt5-xxl-enc-bf16.pth`, the state dict of `wan/modules/t5.py`
`T5Encoder`; our names are Wan's):
  token_embedding.weight                 -> token_embedding/embedding
  blocks.N.norm1.weight / norm2.weight   -> blocks/norm{1,2}/scale [layer N]
  blocks.N.attn.{q,k,v,o}.weight         -> blocks/attn/{q,k,v,o}/kernel (transposed)
  blocks.N.ffn.gate.0.weight             -> blocks/ffn/gate/kernel (transposed)
  blocks.N.ffn.fc1.weight / fc2.weight   -> blocks/ffn/fc{1,2}/kernel (transposed)
  blocks.N.pos_embedding.embedding.weight -> blocks/pos_embedding [K, N]
  norm.weight                            -> norm/scale

transformers layout (`UMT5EncoderModel.state_dict()`, safetensors or .bin, sharded
or not): `shared.weight` (tied to `encoder.embed_tokens.weight`),
`encoder.block.N.layer.0.SelfAttention.{q,k,v,o,relative_attention_bias}`,
`encoder.block.N.layer.0.layer_norm`, `encoder.block.N.layer.1.DenseReluDense.{wi_0,wi_1,wo}`
(wi_0 is the GELU gate, wi_1 the linear branch), `encoder.block.N.layer.1.layer_norm`,
`encoder.final_layer_norm`: mapped to Wan's names first.
"""

from __future__ import annotations

import os
import re
from typing import Mapping

import ml_dtypes
import numpy as np
from flax import nnx

from realcam_jax.ckpt import convert_common
from realcam_jax.ckpt.convert_common import ConversionError

FORMATS = ("wan", "transformers")

_HF_BLOCK = {
    "layer.0.SelfAttention.q": "attn.q", "layer.0.SelfAttention.k": "attn.k",
    "layer.0.SelfAttention.v": "attn.v", "layer.0.SelfAttention.o": "attn.o",
    "layer.0.SelfAttention.relative_attention_bias": "pos_embedding.embedding",
    "layer.0.layer_norm": "norm1", "layer.1.layer_norm": "norm2",
    "layer.1.DenseReluDense.wi_0": "ffn.gate.0", "layer.1.DenseReluDense.wi_1": "ffn.fc1",
    "layer.1.DenseReluDense.wo": "ffn.fc2",
}
_WAN_BLOCK = {  # Wan module -> (our path, transform)
    "attn.q": ("attn/q/kernel", np.transpose), "attn.k": ("attn/k/kernel", np.transpose),
    "attn.v": ("attn/v/kernel", np.transpose), "attn.o": ("attn/o/kernel", np.transpose),
    "ffn.gate.0": ("ffn/gate/kernel", np.transpose), "ffn.fc1": ("ffn/fc1/kernel", np.transpose),
    "ffn.fc2": ("ffn/fc2/kernel", np.transpose), "norm1": ("norm1/scale", None),
    "norm2": ("norm2/scale", None), "pos_embedding.embedding": ("pos_embedding", None),
}
_HF_BLOCK_RE = re.compile(r"encoder\.block\.(\d+)\.(.+)\.weight")
_WAN_BLOCK_RE = re.compile(r"blocks\.(\d+)\.(.+)\.weight")


def transformers_to_wan_key(key: str) -> str | None:
  """A transformers UMT5EncoderModel key -> Wan's name (None: not an encoder weight)."""
  if key in ("shared.weight", "encoder.embed_tokens.weight"):
    return "token_embedding.weight"
  if key == "encoder.final_layer_norm.weight":
    return "norm.weight"
  m = _HF_BLOCK_RE.fullmatch(key)
  if m and m.group(2) in _HF_BLOCK:
    return f"blocks.{m.group(1)}.{_HF_BLOCK[m.group(2)]}.weight"
  return None


def wan_rename(key: str):
  if key == "token_embedding.weight":
    return "token_embedding/embedding", None
  if key == "norm.weight":
    return "norm/scale", None
  m = _WAN_BLOCK_RE.fullmatch(key)
  if m and m.group(2) in _WAN_BLOCK:
    path, fn = _WAN_BLOCK[m.group(2)]
    return f"blocks/{path}", fn, int(m.group(1))
  return None


_OUR_TO_WAN = {path: module for module, (path, _) in _WAN_BLOCK.items()}


def wan_source_name(path: str, layer: int | None) -> str:
  if path == "token_embedding/embedding":
    return "token_embedding.weight"
  if path == "norm/scale":
    return "norm.weight"
  sub = path.removeprefix("blocks/")
  n = "N" if layer is None else layer
  return f"blocks.{n}.{_OUR_TO_WAN.get(sub, sub)}.weight"


def detect_format(keys) -> str | None:
  keys = set(keys)
  if "token_embedding.weight" in keys or any(k.startswith("blocks.") for k in keys):
    return "wan"
  if keys & {"shared.weight", "encoder.embed_tokens.weight"} or any(
      k.startswith("encoder.block.") for k in keys):
    return "transformers"
  return None


def to_wan_names(flat: Mapping[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
  """Tensors of either layout under Wan's names (a decoder or lm_head is reported)."""
  fmt = detect_format(flat)
  if fmt is None:
    raise ConversionError(f"{source}: not a umT5 encoder checkpoint (no token_embedding.weight "
                          f"or shared.weight; first keys: {sorted(flat)[:5]})")
  if fmt == "wan":
    return {k.removeprefix("module."): v for k, v in flat.items()}
  out, unexpected = {}, []
  for key, value in flat.items():
    name = transformers_to_wan_key(key)
    if name is None:
      unexpected.append(key)
    elif name not in out:   # shared.weight and its tied copy encoder.embed_tokens.weight
      out[name] = value
  if unexpected:
    raise ConversionError(f"{source}: {len(unexpected)} tensor(s) that are not part of a "
                          f"umT5 encoder, e.g. {sorted(unexpected)[:3]}; pass the encoder only "
                          "(UMT5EncoderModel, not a full UMT5 model)")
  return out


def _torch_to_numpy(t) -> np.ndarray:
  import torch
  t = t.detach().cpu()
  if t.dtype == torch.bfloat16:
    return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
  return t.numpy()


def _load_torch(path: str) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError:
    raise ConversionError(f"reading {path} (a PyTorch pickle) needs torch: pip install "
                          "torch==2.13.0 (CPU wheel)") from None
  try:
    sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
  except Exception as e:  # torch raises many types for a bad pickle
    raise ConversionError(f"cannot read {path} as a PyTorch state dict: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
  if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
    sd = sd["state_dict"]
  if not isinstance(sd, dict):
    raise ConversionError(f"{path}: expected a state dict (name -> tensor), got "
                          f"{type(sd).__name__}")
  return {k: _torch_to_numpy(v) for k, v in sd.items() if hasattr(v, "dtype")}


def load_weights(path: str) -> dict[str, np.ndarray]:
  """Tensors of a `.pth` / `.bin` file, a `.safetensors` file or index, or a folder holding
  one of them (transformers `UMT5EncoderModel.save_pretrained`)."""
  if not os.path.exists(path):
    raise ConversionError(f"umT5 weights {path} do not exist; pass "
                          "models_t5_umt5-xxl-enc-bf16.pth or a UMT5EncoderModel folder")
  if os.path.isdir(path):
    names = sorted(os.listdir(path))
    if any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names):
      return convert_common.load_safetensors(path)
    torch_files = [n for n in names if n.endswith((".bin", ".pth", ".pt"))]
    if len(torch_files) == 1:
      return _load_torch(os.path.join(path, torch_files[0]))
    raise ConversionError(f"folder {path} holds no *.safetensors and not exactly one .bin/.pth "
                          f"file (found {torch_files or 'none'})")
  if path.endswith((".safetensors", ".json")):
    return convert_common.load_safetensors(path)
  return _load_torch(path)


def convert(flat: Mapping[str, np.ndarray], config, source: str) -> nnx.State:
  """Checked `nnx.State` of `UMT5Encoder(config.text)` from tensors of either layout."""
  from realcam_jax.models.text.umt5 import UMT5Encoder
  wan = to_wan_names(flat, source)
  abstract = nnx.eval_shape(lambda: UMT5Encoder(config.text, rngs=nnx.Rngs(0)))
  return convert_common.convert_state(wan, wan_rename, nnx.state(abstract), source=source,
                                      source_name=wan_source_name)


def load_encoder(path: str, config):
  """`UMT5Encoder` with the converted weights at `path` (see `load_weights`)."""
  from realcam_jax.models.text.umt5 import UMT5Encoder
  state = convert(load_weights(path), config, source=path)
  abstract = nnx.eval_shape(lambda: UMT5Encoder(config.text, rngs=nnx.Rngs(0)))
  return nnx.merge(nnx.graphdef(abstract), state)

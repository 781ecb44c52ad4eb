"""Rename tables: Wan2.1 VAE weights (diffusers or original Wan layout) -> `WanVAE` state.

Diffusers layout (`AutoencoderKLWan.state_dict()`, `vae/diffusion_pytorch_model.safetensors`):
our module tree uses the same names, so a key maps by replacing '.' with '/', except
  - `resample.1` (the conv inside diffusers' `nn.Sequential`) -> `resample`
  - `weight` -> `kernel`, `gamma` stays `gamma`.
Transforms: Conv3d weight [O, I, t, h, w] -> kernel [t, h, w, I, O]; Conv2d weight
[O, I, h, w] -> [h, w, I, O]; RMS-norm gamma [C, 1, 1(, 1)] -> [C].

Original Wan layout (`Wan2.1_VAE.pth` of the Wan-AI release, `wan/modules/vae.py`):
mapped to diffusers keys first. The mapping is derived from the architecture (Wan's
`Encoder3d`/`Decoder3d` keep flat `nn.Sequential`s) and agrees with diffusers' own
converter `convert_wan_vae_to_diffusers` (diffusers/loaders/single_file_utils.py,
diffusers 0.42; hard-coded to Wan2.1's 4 stages, tested against ours there):
  encoder.conv1 / decoder.conv1        -> {encoder,decoder}.conv_in
  encoder.downsamples.N                -> encoder.down_blocks.N (same flat index)
  decoder.upsamples.N                  -> decoder.up_blocks.I.resnets.J / .upsamplers.0
                                          (N = I*(R+1) + J, R = num_res_blocks + 1 resnets)
  X.middle.{0,1,2}                     -> X.mid_block.{resnets.0, attentions.0, resnets.1}
  X.head.0 / X.head.2                  -> X.norm_out / X.conv_out
  residual.{0,2,3,6} / shortcut        -> norm1, conv1, norm2, conv2 / conv_shortcut
  conv1 / conv2 (top level)            -> quant_conv / post_quant_conv
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import numpy as np

from realcam_jax.ckpt.convert_common import ConversionError, Rename, SourceName

FORMATS = ("diffusers", "wan")

_RESIDUAL = {"residual.0": "norm1", "residual.2": "conv1", "residual.3": "norm2",
             "residual.6": "conv2", "shortcut": "conv_shortcut"}
_MIDDLE = {"middle.0": "mid_block.resnets.0", "middle.1": "mid_block.attentions.0",
           "middle.2": "mid_block.resnets.1", "head.0": "norm_out", "head.2": "conv_out",
           "conv1": "conv_in"}
_TOP = {"conv1": "quant_conv", "conv2": "post_quant_conv"}


def _transform(param: str):
  if param == "gamma":
    return lambda g: np.reshape(g, (-1,))
  if param == "bias":
    return None

  def weight(w):
    if w.ndim == 5:
      return np.transpose(w, (2, 3, 4, 1, 0))
    if w.ndim == 4:
      return np.transpose(w, (2, 3, 1, 0))
    raise ValueError(f"expected a 4D or 5D conv weight, got {w.ndim}D")
  return weight


def diffusers_rename(key: str):
  """Diffusers key -> (our '/'-path, transform) or None (see convert_common)."""
  module, _, param = key.rpartition(".")
  if not module or param not in ("weight", "bias", "gamma"):
    return None
  parts = module.replace("resample.1", "resample").split(".")
  name = {"weight": "kernel", "bias": "bias", "gamma": "gamma"}[param]
  return "/".join(parts + [name]), _transform(param)


def diffusers_source_name(path: str, layer: int | None = None) -> str:
  """Our '/'-path -> the diffusers key it comes from (inverse of `diffusers_rename`)."""
  del layer
  parts = path.split("/")
  param = {"kernel": "weight", "bias": "bias", "gamma": "gamma"}[parts[-1]]
  parts = ["resample.1" if p == "resample" else p for p in parts[:-1]]
  return ".".join(parts + [param])


class WanLayout:
  """Original Wan <-> diffusers key names for one VAE config (needs num_res_blocks)."""

  def __init__(self, num_res_blocks: int):
    self.resnets = num_res_blocks + 1   # residual blocks per decoder stage

  def to_diffusers(self, key: str) -> str | None:
    """Original Wan key -> diffusers key (None if it has no counterpart)."""
    module, _, param = key.rpartition(".")
    if module in _TOP:
      return f"{_TOP[module]}.{param}"
    m = re.fullmatch(r"(encoder|decoder)\.(.+)", module)
    if not m:
      return None
    part, rest = m[1], m[2]
    for src, dst in _MIDDLE.items():
      if rest == src or rest.startswith(src + "."):
        rest = dst + rest[len(src):]
        break
    else:
      m2 = re.fullmatch(r"(downsamples|upsamples)\.(\d+)(\..+)?", rest)
      if not m2:
        return None
      n, tail = int(m2[2]), m2[3] or ""
      if m2[1] == "downsamples":
        rest = f"down_blocks.{n}{tail}"
      else:
        stage, j = divmod(n, self.resnets + 1)
        inner = f"resnets.{j}" if j < self.resnets else "upsamplers.0"
        rest = f"up_blocks.{stage}.{inner}{tail}"
    for src, dst in _RESIDUAL.items():
      rest = re.sub(rf"(^|\.){re.escape(src)}$", rf"\g<1>{dst}", rest)
    return f"{part}.{rest}.{param}"

  def from_diffusers(self, key: str) -> str:
    """Diffusers key -> original Wan key (inverse of `to_diffusers`)."""
    module, _, param = key.rpartition(".")
    inv_top = {v: k for k, v in _TOP.items()}
    if module in inv_top:
      return f"{inv_top[module]}.{param}"
    part, _, rest = module.partition(".")
    for src, dst in _RESIDUAL.items():
      rest = re.sub(rf"(^|\.){re.escape(dst)}$", rf"\g<1>{src}", rest)
    for src, dst in _MIDDLE.items():
      if rest == dst or rest.startswith(dst + "."):
        rest = src + rest[len(dst):]
        break
    else:
      rest = re.sub(r"^down_blocks\.", "downsamples.", rest)
      m = re.fullmatch(r"up_blocks\.(\d+)\.(resnets\.(\d+)|upsamplers\.0)(\..+)?", rest)
      if m:
        j = int(m[3]) if m[3] is not None else self.resnets
        rest = f"upsamples.{int(m[1]) * (self.resnets + 1) + j}{m[4] or ''}"
    return f"{part}.{rest}.{param}"


def rename_for(fmt: str, model_config: Mapping[str, Any]) -> tuple[Rename, SourceName]:
  """(rename, source_name) for a weight layout name and a `configs/vae.py` model section."""
  if fmt == "diffusers":
    return diffusers_rename, diffusers_source_name
  if fmt == "wan":
    layout = WanLayout(int(model_config["num_res_blocks"]))

    def rename(key):
      d = layout.to_diffusers(key)
      return None if d is None else diffusers_rename(d)

    def source_name(path, layer=None):
      return layout.from_diffusers(diffusers_source_name(path, layer))
    return rename, source_name
  raise ValueError(f"unknown VAE weight format {fmt!r}; expected one of {FORMATS}")


def detect_format(keys) -> str | None:
  """'diffusers', 'wan' or None from the key names of a VAE file."""
  keys = list(keys)
  if any(k.startswith(("encoder.down_blocks.", "encoder.conv_in.", "quant_conv.")) for k in keys):
    return "diffusers"
  if any(k.startswith(("encoder.downsamples.", "encoder.conv1.", "encoder.head.")) for k in keys):
    return "wan"
  return None


def load_weights(path: str) -> dict[str, np.ndarray]:
  """A VAE weight file: safetensors (any form `load_safetensors` takes) or a torch `.pth`/`.pt`.

  `.pth` files (e.g. `Wan2.1_VAE.pth`) are read with `torch.load(weights_only=True)`
  (no code execution); PyTorch must be installed for them.
  """
  from realcam_jax.ckpt.convert_common import load_safetensors
  if not path.endswith((".pth", ".pt", ".bin")):
    return load_safetensors(path)
  if not os.path.isfile(path):
    raise ConversionError(f"weights file {path!r} does not exist")
  try:
    import torch
  except ImportError as e:
    raise ConversionError(f"reading {path!r} needs PyTorch (pip install torch); or convert it "
                          f"to .safetensors first") from e
  try:
    sd = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises many types for corrupt/unsafe pickles
    raise ConversionError(f"cannot read torch checkpoint {path!r}: {e}") from e
  if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
    sd = sd["state_dict"]
  if not isinstance(sd, dict):
    raise ConversionError(f"torch checkpoint {path!r} holds a {type(sd).__name__}, expected a "
                          f"state dict of tensors")
  out = {}
  for k, v in sd.items():
    if not hasattr(v, "detach"):
      raise ConversionError(f"torch checkpoint {path!r}: entry {k!r} is a {type(v).__name__}, "
                            f"not a tensor")
    v = v.detach().cpu()
    out[k] = (v.float() if v.dtype == torch.bfloat16 else v).numpy()
  return out


def convert(flat: Mapping[str, np.ndarray], fmt: str, config, source: str):
  """Converts VAE weights for `config.model` (configs/vae.py); returns (nnx.State, format).

  fmt: 'diffusers', 'wan' or 'auto' (detected from the key names).
  """
  from flax import nnx

  from realcam_jax.ckpt import convert_common
  from realcam_jax.models.vae import WanVAE

  if fmt == "auto":
    fmt = detect_format(flat)
    if fmt is None:
      raise ConversionError(
          f"cannot tell the layout of {source}: its keys look like neither diffusers "
          f"('encoder.down_blocks.N...') nor original Wan ('encoder.downsamples.N...'); "
          f"pass --format")
  rename, source_name = rename_for(fmt, config.model)
  abstract = nnx.state(nnx.eval_shape(lambda: WanVAE.from_config(config.model, rngs=nnx.Rngs(0))))
  state = convert_common.convert_state(flat, rename, abstract, source=f"{source} ({fmt} layout)",
                                       source_name=source_name)
  return state, fmt


def load_vae(ckpt_dir: str):
  """A `WanVAE` from an `orbax_io` checkpoint (`realcam convert --model vae` or the demo
  VAE export), built from the config saved with it (latents_mean/std included)."""
  from flax import nnx

  from realcam_jax.ckpt import orbax_io
  from realcam_jax.models.vae import WanVAE
  config = orbax_io.load_config(ckpt_dir)
  abstract = nnx.eval_shape(lambda: WanVAE.from_config(config.model, rngs=nnx.Rngs(0)))
  graphdef, abs_state = nnx.split(abstract)
  return nnx.merge(graphdef, orbax_io.load_state(ckpt_dir, abs_state))

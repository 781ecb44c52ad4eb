"""`realcam convert`: pretrained weights (safetensors) -> an Orbax checkpoint of our model.

  realcam convert --format {diffusers,wan,auto} --weights FILE.safetensors \\
      --config configs/dit.py:wan2_1_1_3b --out DIR [--force] [--model dit]

FILE may also be a sharded `*.safetensors.index.json` or a directory holding one.
Nothing is written unless every key, shape and dtype fits the model.
"""

from __future__ import annotations

import os
import time
from typing import Callable

HELP = "convert pretrained weights (diffusers or original Wan layout) into an Orbax checkpoint"


def _convert_dit(flat, fmt: str, config, source: str):
  """Converts DiT weights; returns the checked nnx.State."""
  from flax import nnx

  from realcam_jax.ckpt import convert_common, dit_weights
  from realcam_jax.models.dit import WanDiT

  if fmt == "auto":
    fmt = dit_weights.detect_format(flat)
    if fmt is None:
      raise convert_common.ConversionError(
          f"cannot tell the layout of {source}: its keys look like neither diffusers "
          f"('blocks.N.attn1...') nor original Wan ('blocks.N.self_attn...'); pass --format")
  rename, source_name = dit_weights.rename_for(fmt)
  abstract = nnx.state(nnx.eval_shape(lambda: WanDiT(config.model, rngs=nnx.Rngs(0))))
  try:
    state = convert_common.convert_state(flat, rename, abstract, source=f"{source} ({fmt} layout)",
                                         source_name=source_name)
  except convert_common.ConversionError as e:
    looks = dit_weights.detect_format(flat)
    if looks not in (None, fmt):
      raise convert_common.ConversionError(
          f"{source} looks like the {looks!r} layout, not {fmt!r}: try --format {looks}\n{e}"
      ) from e
    raise
  return state, fmt


def _convert_vae(flat, fmt: str, config, source: str):
  """Converts Wan2.1 VAE weights (configs/vae.py); returns (checked nnx.State, format)."""
  from realcam_jax.ckpt import vae_weights
  return vae_weights.convert(flat, fmt, config, source)


def _load_vae(path: str):
  """VAE files also come as torch pickles (`Wan2.1_VAE.pth`)."""
  from realcam_jax.ckpt import vae_weights
  return vae_weights.load_weights(path)


# --model name -> converter(flat, format, config, source) -> (state, resolved format)
CONVERTERS: dict[str, Callable] = {
    "dit": _convert_dit,
    "vae": _convert_vae,
}

# --model name -> weight-file reader (default: convert_common.load_safetensors)
LOADERS: dict[str, Callable] = {
    "vae": _load_vae,
}


def add_arguments(parser) -> None:
  parser.add_argument("--model", choices=sorted(CONVERTERS), default="dit",
                      help="which network the weights belong to (default: dit)")
  parser.add_argument("--format", required=True, choices=("diffusers", "wan", "auto"),
                      help="key layout of the file: diffusers (blocks.N.attn1.to_q.weight), "
                           "wan (original release: blocks.N.self_attn.q.weight), or auto")
  parser.add_argument("--weights", required=True,
                      help=".safetensors file, sharded *.safetensors.index.json, or a directory "
                           "(--model vae also takes a torch .pth, e.g. Wan2.1_VAE.pth)")
  parser.add_argument("--config", required=True,
                      help="model config, e.g. configs/dit.py:wan2_1_1_3b (+ --config.x=y)")
  parser.add_argument("--out", required=True, help="output checkpoint directory")
  parser.add_argument("--force", action="store_true", help="replace a non-empty --out")


def run(args, config_overrides) -> int:
  from realcam_jax import config as config_lib
  from realcam_jax.ckpt import convert_common, orbax_io
  from realcam_jax.cli import UserError

  try:
    orbax_io.check_out_dir(args.out, args.force)
    config = config_lib.get_config(args.config, config_overrides)
    t0 = time.time()
    flat = LOADERS.get(args.model, convert_common.load_safetensors)(args.weights)
    state, fmt = CONVERTERS[args.model](flat, args.format, config, os.path.basename(args.weights))
    orbax_io.save_state(args.out, state, config, force=args.force,
                        meta=dict(model=args.model, format=fmt,
                                  weights=os.path.abspath(args.weights), config=args.config,
                                  overrides=list(config_overrides)))
  except (convert_common.ConversionError, orbax_io.CheckpointError) as e:
    raise UserError(str(e)) from e
  n = sum(int(v.size) for v in flat.values())
  print(f"converted {len(flat)} tensors ({n:,} values, {fmt} layout) into {args.out} "
        f"in {time.time() - t0:.1f} s")
  return 0

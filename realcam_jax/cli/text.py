"""`realcam text encode`: Wan's umT5-XXL embeddings of every caption of a dataset.

  realcam text encode --config configs/text.py:umt5_xxl \\
      --weights models_t5_umt5-xxl-enc-bf16.pth --tokenizer google/umt5-xxl \\
      --captions DATA --out DATA/text_umt5

--weights: Wan's `models_t5_umt5-xxl-enc-bf16.pth` or a transformers `UMT5EncoderModel`
folder; --tokenizer: the google/umt5-xxl tokenizer folder (or a SentencePiece .model);
--captions: an imported dataset (its captions.json) or a .txt file of captions. The
batch (`config.batch_size`) is split over all devices (`config.mesh`; parameters
sharded by `realcam_jax.sharding`'s rules). Train on it with `--config.data.text_dir=OUT`.
"""

from __future__ import annotations

import sys
import time

from realcam_jax.cli import UserError

HELP = "encode captions with Wan's umT5 text encoder (stored once per unique caption)"


def add_arguments(parser):
  sub = parser.add_subparsers(dest="text_command", metavar="ACTION")
  p = sub.add_parser("encode", help=HELP, description=HELP)
  p.add_argument("--config", default="configs/text.py:umt5_xxl", metavar="FILE[:ARG]")
  p.add_argument("--weights", required=True, metavar="PATH",
                 help="models_t5_umt5-xxl-enc-bf16.pth or a UMT5EncoderModel folder")
  p.add_argument("--tokenizer", default=None, metavar="PATH", help="tokenizer folder or "
                 "SentencePiece .model (default: the --weights folder)")
  p.add_argument("--captions", required=True, metavar="PATH",
                 help="imported dataset folder (captions.json), or a .json / .txt file")
  p.add_argument("--out", required=True, metavar="DIR", help="text store to write")


def make_encode_fn(encoder, config):
  """(ids, mask) -> f32[B, L, D] numpy, jitted with the batch split over the mesh."""
  import jax
  import numpy as np
  from flax import nnx

  from realcam_jax import sharding
  mesh = sharding.make_mesh(config.mesh)
  rows = mesh.shape["data"] * mesh.shape["fsdp"]
  if config.batch_size % rows:
    raise UserError(f"batch_size={config.batch_size} must be a multiple of the {rows} devices "
                    "that split the batch (mesh data x fsdp)")
  graphdef, state = nnx.split(encoder)
  state_sh = sharding.state_shardings(state, mesh)
  state = jax.device_put(state, state_sh)
  batch_sh = sharding.batch_sharding(mesh, 2)
  with sharding.use_rules(config.mesh.rules):
    fn = jax.jit(lambda s, ids, mask: nnx.merge(graphdef, s)(ids, mask),
                 in_shardings=(state_sh, batch_sh, batch_sh),
                 out_shardings=sharding.batch_sharding(mesh, 3))

  def encode(ids, mask):
    with jax.set_mesh(mesh), sharding.use_rules(config.mesh.rules):
      return np.asarray(fn(state, jax.device_put(np.asarray(ids, np.int32), batch_sh),
                            jax.device_put(np.asarray(mask, np.int32), batch_sh)), np.float32)
  return encode


def run(args, overrides) -> int:
  if getattr(args, "text_command", None) != "encode":
    raise UserError("expected an action: encode (see realcam text --help)")
  from tqdm import tqdm

  from realcam_jax.ckpt import umt5_weights
  from realcam_jax.ckpt.convert_common import ConversionError
  from realcam_jax.config import get_config
  from realcam_jax.data import text_store
  from realcam_jax.models.text.tokenizer import TokenizerError, load_tokenizer

  config = get_config(args.config, overrides)
  if "text" not in config:
    raise UserError(f"config {args.config!r} has no `text` section; try configs/text.py:umt5_xxl")
  try:
    captions = text_store.read_captions(args.captions)
    tokenizer = load_tokenizer(args.tokenizer or args.weights, config.text.text_len,
                               config.text.clean)
    print(f"loading the umT5 encoder from {args.weights}", flush=True)
    encoder = umt5_weights.load_encoder(args.weights, config)
  except (text_store.TextStoreError, TokenizerError, ConversionError) as e:
    raise UserError(str(e)) from None
  encode = make_encode_fn(encoder, config)
  print(f"encoding {len(captions)} unique captions (the empty prompt included) -> {args.out}",
        flush=True)
  bar = tqdm(total=len(captions), unit="caption", desc="encoding", file=sys.stderr)
  start = time.time()
  try:
    text_store.encode_captions(
        captions, encode, tokenizer, args.out, batch_size=int(config.batch_size),
        store_dtype=config.store_dtype, progress=bar.update,
        meta=dict(weights=args.weights, tokenizer=args.tokenizer or args.weights,
                  config=config.text.to_dict()))
  except text_store.TextStoreError as e:
    raise UserError(str(e)) from None
  except KeyboardInterrupt:
    print(f"interrupted: finished parts are kept in {args.out}.partial; rerun to resume",
          file=sys.stderr)
    return 130
  finally:
    bar.close()
  secs = time.time() - start
  print(f"done in {secs:.0f} s ({len(captions) / max(secs, 1e-9):.1f} captions/s): {args.out}; "
        f"train with --config.data.text_dir={args.out}")
  return 0

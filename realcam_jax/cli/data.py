"""`realcam data ACTION`: build datasets and encode them to latents.

  realcam data build --config configs/data.py:demo --out DATA_DIR [--split-sizes train=512,test=16]
  realcam data encode --config configs/data.py:demo --data-dir DATA_DIR --vae VAE_CKPT --out LATENTS
  realcam data import multicamvideo --src MultiCamVideo-Dataset --out DATA --size 480x832 --frames 81

Actions live in `ACTIONS` (name -> (help, add_arguments, run)); a new action
is one more entry.
"""

from __future__ import annotations

import os
import sys
import time

from realcam_jax.cli import UserError

HELP = "build the synthetic multi-camera dataset (TFDS ArrayRecord) and encode it to latents"


def _parse_split_sizes(text: str) -> dict:
  from realcam_jax.data.tfds_builder import SPLITS
  sizes = {}
  for item in text.split(","):
    key, eq, value = item.strip().partition("=")
    if not eq or key not in SPLITS:
      raise UserError(f"--split-sizes item {item!r}: expected SPLIT=N with SPLIT one of "
                      f"{', '.join(SPLITS)}, e.g. train=512,validation=16,test=16")
    try:
      sizes[key] = int(value)
    except ValueError:
      raise UserError(f"--split-sizes {key}={value!r}: expected a whole number") from None
    if sizes[key] < 0:
      raise UserError(f"--split-sizes {key}={value}: expected >= 0")
  return sizes


def _add_build_arguments(p):
  p.add_argument("--config", required=True, metavar="FILE[:ARG]",
                 help="data config, e.g. configs/data.py:demo (uses its `data` section)")
  p.add_argument("--out", required=True, metavar="DIR", help="dataset root directory")
  p.add_argument("--split-sizes", metavar="SPLIT=N,...",
                 help="clips per split, overriding data.split_sizes (others keep the config)")
  p.add_argument("--overwrite", action="store_true", help="rebuild an existing dataset")


def _run_build(args, overrides) -> int:
  import tensorflow_datasets as tfds
  from tqdm import tqdm

  from realcam_jax.config import get_config
  from realcam_jax.data import tfds_builder

  config = get_config(args.config, overrides)
  if "data" not in config:
    raise UserError(f"config {args.config!r} has no `data` section; try configs/data.py:demo")
  data = config.data
  if args.split_sizes:
    for split, n in _parse_split_sizes(args.split_sizes).items():
      data.split_sizes[split] = n
  try:
    builder_config = tfds_builder.config_from_data(data)
  except ValueError as e:
    raise UserError(str(e)) from None
  target = tfds_builder.dataset_dir(args.out, builder_config)
  if os.path.exists(target) and not args.overwrite:
    raise UserError(f"a dataset already exists at {target}; pass --overwrite to rebuild it")
  sizes = {k: v for k, v in builder_config.split_sizes.items() if v}
  print(f"building {builder_config.name}: {builder_config.height}x{builder_config.width} px, "
        f"{builder_config.num_frames} frames, 1 source + {builder_config.num_target_cameras} "
        f"target cameras; clips {sizes} -> {target}", flush=True)
  tfds.disable_progress_bar()
  bar = tqdm(total=sum(sizes.values()), unit="clip", desc="rendering", file=sys.stderr)

  def progress(split):
    bar.set_postfix_str(split, refresh=False)
    bar.update(1)

  start = time.time()
  try:
    tfds_builder.build(args.out, builder_config, progress=progress, overwrite=args.overwrite)
  except KeyboardInterrupt:
    bar.close()
    print(f"interrupted: nothing was written to {target}", file=sys.stderr)
    return 130
  bar.close()
  size = sum(os.path.getsize(os.path.join(target, f)) for f in os.listdir(target))
  print(f"done in {time.time() - start:.0f} s: {target} ({size / 2**20:.1f} MiB)")
  print(f"read it with make_dataset({args.out!r}, split, config) or "
        f"--config.data.data_dir={args.out}")
  return 0


def _add_encode_arguments(p):
  p.add_argument("--config", default=None, metavar="FILE[:ARG]",
                 help="the data config the dataset was built with (its `data` section)")
  p.add_argument("--dataset", default=None, metavar="DIR",
                 help="an imported dataset (`realcam data import`) instead of --config: "
                      "encoded over all devices, resumable, frames/s reported")
  p.add_argument("--batch-size", type=int, default=1, metavar="N",
                 help="records per step with --dataset (N x (1 + C) videos, split over the "
                      "devices)")
  p.add_argument("--data-dir", default=None, metavar="DIR",
                 help="root of the built dataset (default: data.data_dir)")
  p.add_argument("--vae", required=True, metavar="CKPT",
                 help="VAE checkpoint (from `realcam convert --model vae` or "
                      "launch/train_vae.py --export)")
  p.add_argument("--out", required=True, metavar="DIR", help="latent dataset directory")
  p.add_argument("--splits", default=None, metavar="S1,S2",
                 help="splits to encode (default: every built split)")
  p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
  p.add_argument("--anchor-depth", type=float, default=None, metavar="METRES",
                 help="also store anchor_latent: each source video warped to every target "
                      "camera through the plane at this distance, encoded (the anchor of "
                      "model.warp_space=pixel, e.g. configs/teacher.py:demo,vae4x,pixel_warp "
                      "with its model.warp_depth, 8)")


def _run_encode(args, overrides) -> int:
  from tqdm import tqdm

  from realcam_jax.ckpt import orbax_io, vae_weights
  from realcam_jax.config import get_config
  from realcam_jax.data import latents, tfds_builder

  if args.dataset:
    return _run_encode_imported(args, overrides)
  if not args.config:
    raise UserError("pass --config (a built synthetic dataset) or --dataset (an imported one)")
  config = get_config(args.config, overrides)
  if "data" not in config:
    raise UserError(f"config {args.config!r} has no `data` section; try configs/data.py:demo")
  data_dir = args.data_dir or config.data.data_dir
  if not data_dir:
    raise UserError("pass --data-dir (or set data.data_dir) to the built dataset's root")
  splits = [s.strip() for s in args.splits.split(",")] if args.splits else None
  try:
    sources = latents.open_build(data_dir, config.data, splits)
    vae = vae_weights.load_vae(args.vae)
  except (latents.LatentDatasetError, tfds_builder.DatasetMissingError, ValueError,
          orbax_io.CheckpointError) as e:
    raise UserError(str(e)) from None
  total = sum(len(s) for s in sources.values())
  print(f"encoding {total} clips ({', '.join(f'{k}: {len(v)}' for k, v in sources.items())}) "
        f"with the VAE at {args.vae} -> {args.out}", flush=True)
  bar = tqdm(total=total, unit="clip", desc="encoding", file=sys.stderr)

  def progress(split):
    bar.set_postfix_str(split, refresh=False)
    bar.update(1)

  start = time.time()
  try:
    latents.encode_dataset(sources, vae, args.out, overwrite=args.overwrite, progress=progress,
                           anchor_depth=args.anchor_depth,
                           meta=dict(data_dir=os.path.abspath(data_dir), data_config=args.config,
                                     vae_checkpoint=os.path.abspath(args.vae)))
  except latents.LatentDatasetError as e:
    raise UserError(str(e)) from None
  finally:
    bar.close()
  print(f"done in {time.time() - start:.0f} s: {args.out}; train on it with "
        f"--config.data.dataset_dir={args.out}")
  return 0


from realcam_jax.cli.data_import import add_import_arguments, run_import  # noqa: E402

def _run_encode_imported(args, overrides) -> int:
  from tqdm import tqdm

  from configs.common import mesh_config
  from realcam_jax.ckpt import orbax_io, vae_weights
  from realcam_jax.config import apply_overrides
  from realcam_jax.data import latent_encode, latents, multicam
  from realcam_jax.data.multicam_import import open_imported

  import ml_collections
  cfg = ml_collections.ConfigDict(dict(mesh=mesh_config()))
  apply_overrides(cfg, overrides)   # e.g. --config.mesh.data=4
  splits = [s.strip() for s in args.splits.split(",")] if args.splits else None
  try:
    sources = open_imported(args.dataset)
    if splits:
      missing = sorted(set(splits) - set(sources))
      if missing:
        raise UserError(f"{args.dataset} has no split(s) {missing}; it has {sorted(sources)}")
      sources = {k: sources[k] for k in splits}
    vae = vae_weights.load_vae(args.vae)
  except (multicam.ImportError_, ValueError, orbax_io.CheckpointError) as e:
    raise UserError(str(e)) from None
  total = sum(len(s) for s in sources.values())
  print(f"encoding {total} records ({', '.join(f'{k}: {len(v)}' for k, v in sources.items())}) "
        f"with the VAE at {args.vae} -> {args.out}", flush=True)
  bar = tqdm(total=total, unit="record", desc="encoding", file=sys.stderr)
  try:
    stats = latent_encode.encode_dataset(
        sources, vae, args.out, mesh_config=cfg.mesh, batch_size=args.batch_size,
        progress=lambda split, n: bar.update(n), log=lambda m: tqdm.write(m, file=sys.stderr),
        anchor_depth=args.anchor_depth,
        meta=dict(data_dir=os.path.abspath(args.dataset),
                  vae_checkpoint=os.path.abspath(args.vae)))
  except latents.LatentDatasetError as e:
    raise UserError(str(e)) from None
  except KeyboardInterrupt:
    print(f"interrupted: rerun the same command to resume ({args.out}.partial)", file=sys.stderr)
    return 130
  finally:
    bar.close()
  fps = stats["pixel_frames_per_second"]
  print(f"done: {args.out}; {'%.1f' % fps if fps else 'n/a (one batch)'} pixel frames/s on "
        f"{stats['devices']} x {stats['device_kind']} (compilation excluded); train on it with "
        f"--config.data.dataset_dir={args.out}")
  return 0


# name -> (help, add_arguments, run).
ACTIONS = {
    "build": ("render the synthetic multi-camera dataset to TFDS ArrayRecord",
              _add_build_arguments, _run_build),
    "encode": ("encode a built dataset with the VAE into a latent dataset (same splits)",
               _add_encode_arguments, _run_encode),
    "import": ("import a real multi-camera dataset (MultiCamVideo) into the same records",
               add_import_arguments, run_import),
}


def add_arguments(parser):
  sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
  for name, (help_text, add, _) in ACTIONS.items():
    add(sub.add_parser(name, help=help_text, description=help_text))


def run(args, overrides) -> int:
  action = getattr(args, "data_command", None)
  if action not in ACTIONS:
    raise UserError(f"expected an action: {', '.join(ACTIONS)} (see realcam data --help)")
  return ACTIONS[action][2](args, overrides)

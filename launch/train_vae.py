"""Train the demo VAE on synthetic clips, then evaluate and export it.

    python launch/train_vae.py --config configs/vae.py:demo --workdir runs/vae_demo \\
        --export checkpoints/vae_demo [--num_steps N] [--config.train.batch_size=8]

Resumes from `WORKDIR/ckpt` when it holds a checkpoint (kill and rerun freely).
`--export DIR` (after training, or alone with `--num_steps 0`) measures held-out
PSNR, encode/decode frames/s and the latent mean/std, and writes a read-only
checkpoint for `realcam_jax.ckpt.vae_weights.load_vae`; the numbers are printed
as JSON and stored in DIR/meta.json. Multi-host: --coordinator/--num_processes/
--process_id as in launch/train.py.
"""

import argparse
import json
import sys


def main(argv=None):
  from realcam_jax.config import ConfigError, get_config, split_overrides
  argv, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="configs/vae.py:demo", help="FILE[:ARG]")
  p.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl, tb/, clip pools")
  p.add_argument("--num_steps", type=int, default=None, help="stop at this step (default: config)")
  p.add_argument("--export", default=None, help="write the evaluated checkpoint here afterwards")
  p.add_argument("--force", action="store_true", help="replace a non-empty --export directory")
  p.add_argument("--coordinator", default=None, help="host:port of process 0 (multi-host)")
  p.add_argument("--num_processes", type=int, default=None)
  p.add_argument("--process_id", type=int, default=None)
  args = p.parse_args(argv)

  import jax
  if args.coordinator or args.num_processes:
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  try:
    config = get_config(args.config, overrides)
  except ConfigError as e:
    p.error(str(e))
  from realcam_jax.ckpt.orbax_io import CheckpointError
  from realcam_jax.train import common, vae
  try:
    if args.export:
      from realcam_jax.ckpt import orbax_io
      orbax_io.check_out_dir(args.export, args.force)   # fail before hours of training
    if args.num_steps != 0:
      _, _, info = vae.train(config, args.workdir, args.num_steps)
      if jax.process_index() == 0:   # the same lines as launch/train.py (train_demo.py reads them)
        state = ("stopped by signal" if info["stopped_by_signal"] else "finished") + " at step"
        print(f"realcam-train: {state} {info['last_step']}", flush=True)
      if info["stopped_by_signal"]:
        return 0
    if args.export and jax.process_index() == 0:
      report = vae.export(config, args.workdir, args.export, force=args.force)
      print(json.dumps(report, indent=2))
  except common.NonFiniteLossError as e:
    print(f"error: {e}", file=sys.stderr)
    return 3
  except (CheckpointError, ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())

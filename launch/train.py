"""Train any stage: `python launch/train.py --config configs/teacher.py:demo --workdir runs/x`.

Config overrides: `--config.train.num_steps=100`. Multi-host: when the JAX
coordinator environment is set (Cloud TPU sets it; elsewhere pass
--coordinator, --num_processes, --process_id), `jax.distributed.initialize` runs
first. Resumes from `WORKDIR/ckpt` if it holds a checkpoint.
"""

import argparse
import sys


def main(argv=None):
  from realcam_jax.config import ConfigError, get_config, split_overrides
  argv, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", required=True, help="FILE[:ARG], e.g. configs/teacher.py:demo")
  p.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl, tb/")
  p.add_argument("--num_steps", type=int, default=None, help="stop at this step (default: config)")
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
  from realcam_jax.train import common, run
  try:
    _, _, info = run.run(config, args.workdir, args.num_steps)
  except common.NonFiniteLossError as e:
    print(f"error: {e}", file=sys.stderr)
    return 3
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Train any stage: `python launch/train.py --config configs/teacher.py:demo --workdir runs/x`.

Config overrides: `--config.train.num_steps=100`. Multi-host: pass
--coordinator, --num_processes and --process_id (GPU clusters, CPU processes on one
machine), or --multihost to let JAX detect the cluster (Cloud TPU VM pod slices,
SLURM); `jax.distributed.initialize` then runs first, on every process. Resumes from
`WORKDIR/ckpt` if it holds a checkpoint; SIGTERM saves a checkpoint and exits 0.
See docs/launch.md.
"""

import argparse
import sys

FINISHED_PREFIX = "realcam-train:"


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
  p.add_argument("--multihost", action="store_true",
                 help="initialise JAX's distributed runtime from the environment (TPU pods, SLURM)")
  args = p.parse_args(argv)

  from realcam_jax.scale import multihost
  try:
    multihost.initialize(args.coordinator, args.num_processes, args.process_id,
                         auto=args.multihost)
  except ValueError as e:
    p.error(str(e))
  try:
    config = get_config(args.config, overrides)
  except ConfigError as e:
    p.error(str(e))
  from realcam_jax.ckpt.orbax_io import CheckpointError
  from realcam_jax.train import common, run
  try:
    _, _, info = run.run(config, args.workdir, args.num_steps)
  except common.NonFiniteLossError as e:
    print(f"error: {e}", file=sys.stderr)
    return 3
  except CheckpointError as e:      # e.g. a train.init_from that does not fit the model
    print(f"error: {e}", file=sys.stderr)
    return 2
  if multihost.is_main_process():   # launch/tpu_vm.py's watch loop reads this line
    if info.get("stopped_by_signal"):
      print(f"{FINISHED_PREFIX} stopped by signal at step {info['last_step']}; run the same "
            "command to resume", flush=True)
    else:
      print(f"{FINISHED_PREFIX} finished at step {info['last_step']}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())

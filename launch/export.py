"""Export a trained teacher or student as a small, read-only inference checkpoint.

    python launch/export.py --config configs/teacher.py:demo --workdir runs/teacher_demo \\
        --out checkpoints/teacher_demo
    python launch/export.py --config configs/student.py:demo --workdir runs/student_demo \\
        --out checkpoints/student_demo

Only the model parameters are written (no optimizer state, critic or data-iterator
state): the teacher's EMA weights (`ema_params`, else its `params`); for a student
workdir the DMD stage's EMA parameters (then the generator's, then the ODE-init
stage's `params`). The directory is an
`orbax_io` checkpoint (`state/`, `config.json` with the resolved training config,
`meta.json` with the source workdir, training step and export date) that
`realcam_jax.inference.load.load_teacher` / `load_student` read. Nothing is written
when the workdir holds no checkpoint or does not match the config; an existing
non-empty `--out` is only replaced with `--force` (atomically).
"""

import argparse
import datetime
import os
import sys


def export(config, workdir: str, out: str, *, force: bool = False, command: str = "") -> dict:
  """Writes the inference checkpoint; returns its meta dict."""
  from realcam_jax.ckpt import orbax_io
  from realcam_jax.inference import load

  orbax_io.check_out_dir(out, force)
  is_student = "student" in config
  loader = load.load_student if is_student else load.load_teacher
  config, _, params = loader(workdir, config)
  meta = dict(kind="student" if is_student else "teacher", workdir=os.path.abspath(workdir),
              step=load.checkpoint_step(workdir), layout=str(config.model.layout),
              exported=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              command=command)
  orbax_io.save_state(out, params, config, force=force, meta=meta)
  return meta


def main(argv=None):
  from realcam_jax.config import ConfigError, get_config, split_overrides
  raw = list(sys.argv[1:] if argv is None else argv)
  argv, overrides = split_overrides(raw)
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", required=True, help="FILE[:ARG] the model was trained with")
  p.add_argument("--workdir", required=True, help="the training workdir")
  p.add_argument("--out", required=True, help="inference checkpoint directory to write")
  p.add_argument("--force", action="store_true", help="replace a non-empty --out")
  args = p.parse_args(argv)
  try:
    config = get_config(args.config, overrides)
  except ConfigError as e:
    p.error(str(e))
  from realcam_jax.ckpt.orbax_io import CheckpointError
  from realcam_jax.inference.load import LoadError
  if not os.path.isdir(args.workdir):
    print(f"error: workdir {args.workdir} does not exist", file=sys.stderr)
    return 2
  try:
    meta = export(config, args.workdir, args.out, force=args.force,
                  command=" ".join(["python launch/export.py", *raw]))
  except (CheckpointError, LoadError, ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"exported the {meta['kind']} (step {meta['step']}) to {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

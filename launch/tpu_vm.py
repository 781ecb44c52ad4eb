"""Train on a Cloud TPU VM slice: create, copy + install, run on all workers, logs, resume.

  python launch/tpu_vm.py --name realcam --zone us-east5-a --project my-proj \\
      --accelerator_type v5p-64 --spot  create
  python launch/tpu_vm.py ... setup                       # copy this checkout, install
  python launch/tpu_vm.py ... train --config configs/teacher.py:wan2_1_1_3b \\
      --workdir gs://my-bucket/teacher --config.mesh.fsdp=-1 --config.mesh.data=1
  python launch/tpu_vm.py ... logs                        # stream worker 0's log
  python launch/tpu_vm.py ... watch --config ... --workdir gs://...   # until finished:
      # re-creates a preempted spot slice, re-installs, restarts; training resumes
      # from the latest Orbax checkpoint in the bucket
  python launch/tpu_vm.py ... resume --config ... --workdir gs://...  # one recovery
  python launch/tpu_vm.py ... delete

--dry-run prints every command instead of running it. Commands come from
`realcam_jax.scale.launchers`; docs/launch.md explains the configs and meshes.
"""

import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _runner(dry_run: bool):
  from realcam_jax.scale.launchers import to_shell

  def run(cmd, capture=False, check=True):
    if dry_run:
      print(to_shell(cmd), flush=True)
      return ""
    print(f"+ {to_shell(cmd)}", file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=check, text=True,
                         stdout=subprocess.PIPE if capture else None)
    return (out.stdout or "").strip() if capture else out.returncode
  return run


def watch(s, args, overrides, run, dry_run: bool):
  """Polls the slice; recovers from preemption until the training reports it finished."""
  from realcam_jax.scale import launchers as L
  if dry_run:   # print what one poll and one recovery would run
    print("# poll", flush=True)
    run(L.tpu_state(s))
    run(L.tpu_run_status(s))
    print("# slice PREEMPTED / TERMINATED / missing: re-create, install, restart", flush=True)
    for cmd in L.tpu_resume(s, REPO, args.config, args.workdir, args.num_steps, overrides):
      run(cmd)
    print("# slice READY but training STOPPED (e.g. maintenance SIGTERM): restart", flush=True)
    run(L.tpu_train(s, args.config, args.workdir, args.num_steps, overrides))
    return 0
  while True:
    try:
      state = run(L.tpu_state(s), capture=True) or "MISSING"
    except subprocess.CalledProcessError:
      state = "MISSING"
    if state in ("PREEMPTED", "TERMINATED", "STOPPED", "MISSING"):
      print(f"slice {s.name} is {state}: re-creating and resuming", flush=True)
      for cmd in L.tpu_resume(s, REPO, args.config, args.workdir, args.num_steps, overrides,
                              exists=state != "MISSING"):
        run(cmd)
    elif state == "READY":
      status = run(L.tpu_run_status(s), capture=True, check=False)
      if "FINISHED" in status:
        print("training finished", flush=True)
        return 0
      if "STOPPED" in status:
        print("training is not running and did not finish: restarting (it resumes)", flush=True)
        run(L.tpu_train(s, args.config, args.workdir, args.num_steps, overrides))
    time.sleep(args.poll_s)


def main(argv=None):
  from realcam_jax.config import split_overrides
  from realcam_jax.scale import launchers as L
  argv, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--name", required=True, help="TPU VM (slice) name")
  p.add_argument("--zone", required=True)
  p.add_argument("--project", required=True)
  p.add_argument("--accelerator_type", default="v5p-64", help="e.g. v5p-64, v6e-32")
  p.add_argument("--version", default=None, help="TPU runtime; default by family")
  p.add_argument("--spot", action="store_true", help="spot (preemptible) capacity")
  p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                 help="print the commands instead of running them")
  sub = p.add_subparsers(dest="cmd", required=True)
  for name in ("create", "setup", "logs", "status", "delete"):
    sub.add_parser(name)
  for name in ("train", "resume", "watch"):
    q = sub.add_parser(name, help="also takes --config.a.b=value overrides")
    q.add_argument("--config", required=True, help="e.g. configs/teacher.py:wan2_1_1_3b")
    q.add_argument("--workdir", required=True, help="gs://bucket/run (checkpoints)")
    q.add_argument("--num_steps", type=int, default=None)
    if name == "watch":
      q.add_argument("--poll_s", type=float, default=120.0)
  args = p.parse_args(argv)
  if overrides and args.cmd not in ("train", "resume", "watch"):
    p.error(f"config overrides only go with train/resume/watch, got {overrides}")
  try:
    s = L.TpuSlice(args.name, args.zone, args.project, args.accelerator_type, args.version,
                   args.spot)
    run = _runner(args.dry_run)
    if args.cmd == "create":
      run(L.tpu_create(s))
    elif args.cmd == "setup":
      for cmd in L.tpu_setup(s, REPO):
        run(cmd)
    elif args.cmd == "train":
      run(L.tpu_train(s, args.config, args.workdir, args.num_steps, overrides))
      run(L.tpu_logs(s), check=False)
    elif args.cmd == "logs":
      run(L.tpu_logs(s), check=False)
    elif args.cmd == "status":
      run(L.tpu_state(s))
      run(L.tpu_run_status(s))
    elif args.cmd == "delete":
      run(L.tpu_delete(s))
    elif args.cmd == "resume":
      for cmd in L.tpu_resume(s, REPO, args.config, args.workdir, args.num_steps, overrides):
        run(cmd)
    elif args.cmd == "watch":
      return watch(s, args, overrides, run, args.dry_run)
  except ValueError as e:
    p.error(str(e))
  except subprocess.CalledProcessError as e:
    print(f"error: command failed with exit code {e.returncode}: {e.cmd}", file=sys.stderr)
    return e.returncode
  return 0


if __name__ == "__main__":
  sys.exit(main())

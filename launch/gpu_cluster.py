"""Train on several GPU nodes: one process per node (all its GPUs), node 0 coordinates.

Plain ssh (the code is at --remote_dir on every node, optionally synced with --sync):
  python launch/gpu_cluster.py ssh --hosts gpu0,gpu1,gpu2,gpu3 --remote_dir ~/realcam_jax \\
      --python ~/realcam_jax/.venv/bin/python --config configs/teacher.py:wan2_1_1_3b \\
      --workdir /shared/runs/teacher --config.mesh.data=1 --config.mesh.fsdp=-1

SLURM (writes an sbatch script; `--submit` runs sbatch on it):
  python launch/gpu_cluster.py slurm --nodes 4 --gpus_per_node 8 --remote_dir ~/realcam_jax \\
      --config configs/teacher.py:wan2_1_1_3b --workdir /shared/runs/teacher --out job.sbatch

Process i gets --coordinator NODE0:PORT --num_processes N --process_id i. The workdir
must be on a filesystem every node sees (NFS, Lustre) or a gs:// bucket: all processes
write their checkpoint shards there. SIGTERM (SLURM sends it --signal_s before the time
limit) saves a checkpoint; running the same command again resumes. --dry-run prints
the commands (or the script) instead of running them.
"""

import argparse
import os
import subprocess
import sys
import threading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stream(prefix: str, pipe):
  for line in pipe:
    sys.stdout.write(f"[{prefix}] {line}")
    sys.stdout.flush()


def run_ssh(cmds, hosts) -> int:
  """Runs one command per node in parallel, prefixing output with the host; returns the
  worst exit code (and stops the others when one fails)."""
  procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for c in cmds]
  threads = [threading.Thread(target=_stream, args=(h, p.stdout), daemon=True)
             for h, p in zip(hosts, procs)]
  for t in threads:
    t.start()
  codes = {}
  try:
    while len(codes) < len(procs):
      for i, p in enumerate(procs):
        if i not in codes and p.poll() is not None:
          codes[i] = p.returncode
          if p.returncode != 0:
            print(f"[{hosts[i]}] exited with {p.returncode}; stopping the other nodes",
                  file=sys.stderr)
            for q in procs:
              if q.poll() is None:
                q.terminate()
      threading.Event().wait(0.5)
  except KeyboardInterrupt:
    for q in procs:   # ssh forwards the interrupt; training saves and exits
      if q.poll() is None:
        q.terminate()
    raise
  for t in threads:
    t.join(timeout=5)
  return max(codes.values(), key=abs)


def main(argv=None):
  from realcam_jax.config import split_overrides
  from realcam_jax.scale import launchers as L
  argv, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = p.add_subparsers(dest="mode", required=True)
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                      help="print the commands (or the script) instead of running them")
  common.add_argument("--config", required=True)
  common.add_argument("--workdir", required=True, help="shared filesystem path or gs:// bucket")
  common.add_argument("--num_steps", type=int, default=None)
  common.add_argument("--remote_dir", default="~/realcam_jax", help="the code on every node")
  common.add_argument("--python", default="python", help="interpreter on the nodes")
  common.add_argument("--port", type=int, default=12355, help="coordinator port on node 0")
  q = sub.add_parser("ssh", parents=[common])
  q.add_argument("--hosts", required=True, help="comma-separated, node 0 first")
  q.add_argument("--sync", action="store_true", help="rsync this checkout to every node first")
  q.add_argument("--env", action="append", default=[], help="VAR=value set on every node")
  q = sub.add_parser("slurm", parents=[common])
  q.add_argument("--nodes", type=int, required=True)
  q.add_argument("--gpus_per_node", type=int, default=8)
  q.add_argument("--partition", default=None)
  q.add_argument("--time", default="24:00:00")
  q.add_argument("--signal_s", type=int, default=300, help="SIGTERM this long before the limit")
  q.add_argument("--out", default="realcam.sbatch", help="where to write the script")
  q.add_argument("--submit", action="store_true", help="run sbatch on the script")
  args = p.parse_args(argv)

  try:
    if args.mode == "ssh":
      hosts = [h for h in args.hosts.split(",") if h]
      cmds = L.ssh_node_commands(hosts, args.port, args.remote_dir, args.python, args.config,
                                 args.workdir, args.num_steps, overrides, args.env)
      pre = L.rsync_commands(hosts, REPO, args.remote_dir) if args.sync else []
      if args.dry_run:
        for c in pre + cmds:
          print(L.to_shell(c))
        return 0
      for c in pre:
        subprocess.run(c, check=True)
      return run_ssh(cmds, hosts)
    script = L.slurm_script(args.nodes, args.gpus_per_node, args.port, args.remote_dir,
                            args.python, args.config, args.workdir, args.num_steps, overrides,
                            time_limit=args.time, partition=args.partition,
                            signal_s=args.signal_s)
    if args.dry_run:
      print(script, end="")
      if args.submit:
        print(L.to_shell(["sbatch", args.out]))
      return 0
    with open(args.out, "w") as f:
      f.write(script)
    print(f"wrote {args.out}")
    if args.submit:
      return subprocess.run(["sbatch", args.out]).returncode
    return 0
  except ValueError as e:
    p.error(str(e))
  except subprocess.CalledProcessError as e:
    print(f"error: command failed with exit code {e.returncode}: {e.cmd}", file=sys.stderr)
    return e.returncode


if __name__ == "__main__":
  sys.exit(main())

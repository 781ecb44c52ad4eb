"""Command builders for the cluster launchers (`launch/tpu_vm.py`, `launch/gpu_cluster.py`).

Every function returns commands as argv lists (run with `subprocess.run(argv)`), so
the launchers can print them (`--dry-run`) or run them, and tests can check them.
Nothing here runs anything.

Cloud TPU VM flow (one slice = `TpuSlice`):
  create    gcloud compute tpus tpu-vm create (accelerator type, runtime version, spot)
  setup     pack the tracked source tree, scp it to every worker, unpack, and install
            Python 3.11 + the package + jax[tpu] into ~/realcam_venv (uv)
  train     start `launch/train.py --multihost` on all workers (detached, logs in
            ~/realcam_train.log), checkpoints in the gs:// workdir
  logs      stream worker 0's log
  resume    after a spot preemption: delete, re-create, setup, train -- training
            restores the latest Orbax checkpoint from the bucket
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Sequence

Command = list[str]
# Matches the training processes but not a shell whose command line holds this pattern.
TRAIN_PATTERN = "'launch/[t]rain.py'"

REMOTE_DIR = "~/realcam_jax"
REMOTE_VENV = "~/realcam_venv"
REMOTE_LOG = "~/realcam_train.log"
REMOTE_TARBALL = "~/realcam_src.tar.gz"
JAX_VERSION = "0.10.2"
LIBTPU_INDEX = "https://storage.googleapis.com/jax-releases/libtpu_releases.html"
# Written by launch/train.py on process 0 when it exits (see FINISHED_PREFIX there).
FINISHED_MARK = "realcam-train: finished"

# Default TPU VM runtime ("software version") per accelerator family.
RUNTIME_VERSIONS = {
    "v4": "tpu-ubuntu2204-base",
    "v5litepod": "v2-alpha-tpuv5-lite",
    "v5p": "v2-alpha-tpuv5",
    "v6e": "v2-alpha-tpuv6e",
}
# Chips per host and HBM per chip (GB), for docs and the memory plan.
TPU_CHIPS = {"v4": (4, 32), "v5litepod": (4, 16), "v5p": (4, 95), "v6e": (4, 32)}


def tpu_family(accelerator_type: str) -> str:
  family = accelerator_type.rsplit("-", 1)[0]
  if family not in RUNTIME_VERSIONS or not accelerator_type.rsplit("-", 1)[-1].isdigit():
    raise ValueError(f"accelerator type {accelerator_type!r} is not one of "
                     f"{sorted(RUNTIME_VERSIONS)} followed by -SIZE (e.g. v5p-64, v6e-32)")
  return family


@dataclasses.dataclass(frozen=True)
class TpuSlice:
  """A Cloud TPU VM slice."""
  name: str
  zone: str
  project: str
  accelerator_type: str          # e.g. v5p-64 (32 chips, 8 hosts), v6e-32
  version: str | None = None     # runtime version; default by family (RUNTIME_VERSIONS)
  spot: bool = False

  def __post_init__(self):
    for field in ("name", "zone", "project"):
      if not getattr(self, field):
        raise ValueError(f"TPU slice needs --{field}")
    tpu_family(self.accelerator_type)

  @property
  def runtime(self) -> str:
    return self.version or RUNTIME_VERSIONS[tpu_family(self.accelerator_type)]


def quote(arg: str) -> str:
  """shlex.quote that keeps a leading ~/ expandable by the remote shell."""
  if arg.startswith("~/"):
    return "~/" + shlex.quote(arg[2:])
  return shlex.quote(arg)


def shell_join(argv: Sequence[str]) -> str:
  return " ".join(quote(a) for a in argv)


def _gcloud(s: TpuSlice, verb: str, *args: str) -> Command:
  return ["gcloud", "compute", "tpus", "tpu-vm", verb, *args, f"--zone={s.zone}",
          f"--project={s.project}"]


def tpu_create(s: TpuSlice) -> Command:
  cmd = _gcloud(s, "create", s.name, f"--accelerator-type={s.accelerator_type}",
                f"--version={s.runtime}")
  return cmd + (["--spot"] if s.spot else [])


def tpu_delete(s: TpuSlice) -> Command:
  return _gcloud(s, "delete", s.name, "--quiet")


def tpu_state(s: TpuSlice) -> Command:
  """Prints READY, CREATING, PREEMPTED, TERMINATED, ... (fails if the slice is gone)."""
  return _gcloud(s, "describe", s.name, "--format=value(state)")


def tpu_ssh(s: TpuSlice, command: str, worker: str = "all") -> Command:
  return _gcloud(s, "ssh", s.name, f"--worker={worker}", f"--command={command}")


def tpu_scp(s: TpuSlice, local: str, remote: str, worker: str = "all") -> Command:
  return _gcloud(s, "scp", local, f"{s.name}:{remote}", f"--worker={worker}")


def pack_source(repo: str, tarball: str) -> Command:
  """Tars the tracked and untracked-but-not-ignored files of the checkout (no venv, runs)."""
  return ["bash", "-c", f"cd {shlex.quote(repo)} && git ls-files -z --cached --others "
          f"--exclude-standard | tar --null -T - -czf {shlex.quote(tarball)}"]


def install_script(jax_version: str = JAX_VERSION) -> str:
  """Remote shell: unpack the source, Python 3.11 venv (uv), package + jax[tpu] + gcsfs."""
  return " && ".join([
      f"rm -rf {REMOTE_DIR} && mkdir -p {REMOTE_DIR}",
      f"tar -xzf {REMOTE_TARBALL} -C {REMOTE_DIR}",
      "(command -v ~/.local/bin/uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh)",
      f"~/.local/bin/uv venv --allow-existing --python 3.11 {REMOTE_VENV}",
      f"~/.local/bin/uv pip install --python {REMOTE_VENV}/bin/python -f {LIBTPU_INDEX} "
      f"-e {REMOTE_DIR} 'jax[tpu]=={jax_version}' gcsfs google-cloud-storage",
  ])


def tpu_setup(s: TpuSlice, repo: str, tarball: str = "/tmp/realcam_src.tar.gz",
              jax_version: str = JAX_VERSION) -> list[Command]:
  """Copy the code to every worker and install it there."""
  return [pack_source(repo, tarball), tpu_scp(s, tarball, REMOTE_TARBALL),
          tpu_ssh(s, install_script(jax_version))]


def train_argv(config: str, workdir: str, num_steps: int | None = None,
               overrides: Sequence[str] = (), python: str = "python") -> list[str]:
  """`launch/train.py` argv (without the multi-host flags)."""
  argv = [python, "launch/train.py", "--config", config, "--workdir", workdir]
  if num_steps is not None:
    argv += ["--num_steps", str(int(num_steps))]
  bad = [o for o in overrides if not o.startswith("--config.")]
  if bad:
    raise ValueError(f"config overrides must look like --config.a.b=value, got {bad}")
  return argv + list(overrides)


def tpu_train(s: TpuSlice, config: str, workdir: str, num_steps: int | None = None,
              overrides: Sequence[str] = ()) -> Command:
  """Starts training on all workers, detached from the ssh session (survives a dropped
  connection); JAX detects the slice (`--multihost`)."""
  if not workdir.startswith("gs://"):
    raise ValueError(f"--workdir {workdir!r}: on a TPU slice use a gs:// bucket path, so the "
                     "checkpoints outlive a preempted (deleted) slice")
  argv = train_argv(config, workdir, num_steps, overrides, f"{REMOTE_VENV}/bin/python")
  argv.insert(2, "--multihost")
  return tpu_ssh(s, f"cd {REMOTE_DIR} && (pkill -f {TRAIN_PATTERN} || true) && "
                    f"nohup setsid {shell_join(argv)} > {REMOTE_LOG} 2>&1 < /dev/null &")


def tpu_logs(s: TpuSlice, worker: str = "0") -> Command:
  return tpu_ssh(s, f"tail -n +1 -F {REMOTE_LOG}", worker=worker)


def tpu_run_status(s: TpuSlice) -> Command:
  """Prints RUNNING, FINISHED or STOPPED for the training on worker 0."""
  return tpu_ssh(s, f"if pgrep -f {TRAIN_PATTERN} >/dev/null; then echo RUNNING; "
                    f"elif grep -q '{FINISHED_MARK}' {REMOTE_LOG} 2>/dev/null; then echo FINISHED; "
                    f"else echo STOPPED; fi", worker="0")


def tpu_recreate(s: TpuSlice, exists: bool = True) -> list[Command]:
  """Delete a preempted slice (when it still exists) and create it again."""
  return ([tpu_delete(s)] if exists else []) + [tpu_create(s)]


def tpu_resume(s: TpuSlice, repo: str, config: str, workdir: str, num_steps: int | None = None,
               overrides: Sequence[str] = (), exists: bool = True) -> list[Command]:
  """Everything to continue a run whose slice was preempted: the training restores the
  latest checkpoint in `workdir` by itself."""
  return tpu_recreate(s, exists) + tpu_setup(s, repo) + [
      tpu_train(s, config, workdir, num_steps, overrides)]


# ----------------------------------------------------------------------------- GPU clusters

def ssh_node_commands(hosts: Sequence[str], port: int, remote_dir: str, python: str,
                      config: str, workdir: str, num_steps: int | None = None,
                      overrides: Sequence[str] = (), env: Sequence[str] = ()) -> list[Command]:
  """One `ssh HOST '...'` per node; node 0 hosts the coordinator."""
  if not hosts:
    raise ValueError("--hosts needs at least one host name")
  coordinator = f"{hosts[0].split('@')[-1]}:{int(port)}"
  assignments = []
  for item in env:
    name, eq, value = item.partition("=")
    if not eq or not name.isidentifier():
      raise ValueError(f"--env {item!r} must look like NAME=value")
    assignments.append(f"{name}={quote(value)}")
  cmds = []
  for i, host in enumerate(hosts):
    argv = train_argv(config, workdir, num_steps, overrides, python) + [
        "--coordinator", coordinator, "--num_processes", str(len(hosts)), "--process_id", str(i)]
    remote = " ".join([f"cd {quote(remote_dir)} &&", *assignments, shell_join(argv)])
    cmds.append(["ssh", "-o", "BatchMode=yes", host, remote])
  return cmds


def rsync_commands(hosts: Sequence[str], repo: str, remote_dir: str) -> list[Command]:
  return [["rsync", "-az", "--delete", "--exclude=.venv", "--exclude=.git", "--exclude=runs",
           f"{repo.rstrip('/')}/", f"{host}:{remote_dir}/"] for host in hosts]


def slurm_script(nodes: int, gpus_per_node: int, port: int, remote_dir: str, python: str,
                 config: str, workdir: str, num_steps: int | None = None,
                 overrides: Sequence[str] = (), job_name: str = "realcam",
                 time_limit: str = "24:00:00", partition: str | None = None,
                 signal_s: int = 300) -> str:
  """An sbatch script: one task per node, all GPUs of the node in that task; task i is
  process i, node 0 the coordinator. SLURM sends SIGTERM `signal_s` seconds before the
  time limit, so the job saves and exits; submitting the script again resumes."""
  train = shell_join(train_argv(config, workdir, num_steps, overrides, python))
  task = (f"cd {quote(remote_dir)} && exec {train} --coordinator \"$REALCAM_COORDINATOR\" "
          "--num_processes \"$SLURM_NTASKS\" --process_id \"$SLURM_PROCID\"")
  lines = ["#!/bin/bash",
           f"#SBATCH --job-name={job_name}",
           f"#SBATCH --nodes={int(nodes)}",
           "#SBATCH --ntasks-per-node=1",
           f"#SBATCH --gpus-per-node={int(gpus_per_node)}",
           f"#SBATCH --time={time_limit}",
           f"#SBATCH --signal=TERM@{int(signal_s)}",
           "#SBATCH --output=%x-%j.out"]
  if partition:
    lines.append(f"#SBATCH --partition={partition}")
  lines += ["set -euo pipefail",
            "head_node=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | awk 'NR == 1')",
            f"export REALCAM_COORDINATOR=\"$head_node:{int(port)}\"",
            f"srun --kill-on-bad-exit=1 bash -c {shlex.quote(task)}", ""]
  return "\n".join(lines)


def to_shell(cmd: Command) -> str:
  return shlex.join(cmd)

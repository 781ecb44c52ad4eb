"""Dry runs of the cluster launchers print the expected commands, and the shell they
would run on the nodes works (executed here with `echo` standing in for python)."""

import importlib.util
import os
import shlex
import shutil
import stat
import subprocess

import pytest

from realcam_jax.scale import launchers as L

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLICE = ["--name", "rc-test", "--zone", "us-east5-a", "--project", "proj"]
TRAIN = ["--config", "configs/teacher.py:wan2_1_1_3b", "--workdir", "gs://bucket/teacher",
         "--config.mesh.data=1", "--config.mesh.fsdp=-1"]


def _load(name):
  spec = importlib.util.spec_from_file_location(f"launch_{name}",
                                                os.path.join(REPO, "launch", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _dry(capsys, name, argv):
  assert _load(name).main(argv) in (0, None)
  return [l for l in capsys.readouterr().out.splitlines() if l.strip()]


def _argv(line):
  return shlex.split(line)


def test_tpu_create_spot_slice(capsys):
  (line,) = _dry(capsys, "tpu_vm", SLICE + ["--accelerator_type", "v5p-64", "--spot",
                                             "--dry-run", "create"])
  assert _argv(line) == ["gcloud", "compute", "tpus", "tpu-vm", "create", "rc-test",
                         "--accelerator-type=v5p-64", "--version=v2-alpha-tpuv5",
                         "--zone=us-east5-a", "--project=proj", "--spot"]
  (line,) = _dry(capsys, "tpu_vm", SLICE + ["--accelerator_type", "v6e-32", "--dry-run",
                                             "create"])
  assert "--version=v2-alpha-tpuv6e" in _argv(line) and "--spot" not in _argv(line)


def test_tpu_setup_copies_and_installs_on_all_workers(capsys):
  pack, scp, install = _dry(capsys, "tpu_vm", SLICE + ["--dry-run", "setup"])
  assert "git ls-files" in pack and "tar" in pack
  scp = _argv(scp)
  assert scp[4] == "scp" and "--worker=all" in scp and "rc-test:~/realcam_src.tar.gz" in scp
  install = _argv(install)
  assert install[4] == "ssh" and "--worker=all" in install
  command = next(a for a in install if a.startswith("--command="))
  assert "'jax[tpu]==0.10.2'" in command and "-e ~/realcam_jax" in command
  assert "--python 3.11" in command


def test_tpu_train_runs_on_all_workers_with_config_and_bucket(capsys):
  start, logs = _dry(capsys, "tpu_vm", SLICE + ["--dry-run", "train", *TRAIN,
                                                "--num_steps", "20000"])
  start = _argv(start)
  assert start[4:6] == ["ssh", "rc-test"] and "--worker=all" in start
  remote = next(a for a in start if a.startswith("--command="))[len("--command="):]
  train = shlex.split(remote.split("nohup setsid ", 1)[1].split(">", 1)[0])
  assert train == ["~/realcam_venv/bin/python", "launch/train.py", "--multihost",
                   "--config", "configs/teacher.py:wan2_1_1_3b", "--workdir",
                   "gs://bucket/teacher", "--num_steps", "20000", "--config.mesh.data=1",
                   "--config.mesh.fsdp=-1"]
  assert "--worker=0" in _argv(logs) and "tail -n +1 -F ~/realcam_train.log" in logs


def test_tpu_watch_recovers_a_preempted_slice(capsys):
  lines = _dry(capsys, "tpu_vm", SLICE + ["--spot", "--dry-run", "watch", *TRAIN])
  verbs = [_argv(l)[4] for l in lines if l.startswith("gcloud")]
  # poll (state, run status), then delete -> create -> scp -> install -> train, then restart
  assert verbs == ["describe", "ssh", "delete", "create", "scp", "ssh", "ssh", "ssh"]
  create = next(l for l in lines if " create " in l)
  assert "--spot" in create
  assert lines[-1] == next(l for l in lines if "launch/train.py --multihost" in l)


def test_tpu_train_needs_a_bucket_workdir(capsys):
  with pytest.raises(SystemExit):
    _load("tpu_vm").main(SLICE + ["--dry-run", "train", "--config", "c", "--workdir", "/tmp/x"])
  assert "gs:// bucket" in capsys.readouterr().err


def test_tpu_status_shell_reports_finished_and_running(tmp_path):
  """Runs the remote status check in a local bash (HOME = tmp), in a session of its own:
  a `pgrep` wrapper limits the real pgrep to that session (`-s 0`), so a training that
  happens to run on this machine does not count."""
  cmd = _argv(L.to_shell(L.tpu_run_status(L.TpuSlice("n", "z", "p", "v5p-8"))))
  remote = next(a for a in cmd if a.startswith("--command="))[len("--command="):]
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  wrapper = bin_dir / "pgrep"
  wrapper.write_text(f'#!/bin/bash\nexec {shutil.which("pgrep")} -s 0 "$@"\n')
  wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
  env = dict(os.environ, HOME=str(tmp_path), PATH=f"{bin_dir}:{os.environ['PATH']}")
  run = lambda script: subprocess.run(  # noqa: E731
      ["bash", "-c", script], env=env, capture_output=True, text=True,
      start_new_session=True).stdout.strip()
  assert run(remote) == "STOPPED"      # (its own command line does not count as a training)
  # A process whose command line names the trainer, in the same session: RUNNING.
  fake = "(exec -a 'python launch/train.py --config x' sleep 30) & sleep 0.3; "
  assert run(fake + remote + "; kill %1") == "RUNNING"
  (tmp_path / "realcam_train.log").write_text("...\nrealcam-train: finished at step 20000\n")
  assert run(remote) == "FINISHED"


def test_gpu_ssh_sets_coordinator_and_process_ids(capsys, tmp_path):
  lines = _dry(capsys, "gpu_cluster", ["ssh", "--dry-run", "--hosts", "gpu0,gpu1,gpu2",
                                       "--remote_dir", str(tmp_path), "--python", "echo",
                                       "--port", "4321", "--env", "NCCL_DEBUG=WARN", *TRAIN[:4]])
  assert len(lines) == 3
  for i, line in enumerate(lines):
    argv = _argv(line)
    assert argv[:4] == ["ssh", "-o", "BatchMode=yes", f"gpu{i}"]
    # What the node would run, run here: `echo` prints the training arguments.
    out = subprocess.run(["bash", "-c", argv[4]], capture_output=True, text=True).stdout
    assert out.split() == ["launch/train.py", "--config", "configs/teacher.py:wan2_1_1_3b",
                           "--workdir", "gs://bucket/teacher", "--coordinator", "gpu0:4321",
                           "--num_processes", "3", "--process_id", str(i)]
    assert "NCCL_DEBUG=WARN" in argv[4]


def test_slurm_script_gives_each_task_its_process_id(capsys, tmp_path):
  lines = _dry(capsys, "gpu_cluster", ["slurm", "--dry-run", "--nodes", "2", "--gpus_per_node",
                                       "8", "--remote_dir", str(tmp_path), "--python", "echo",
                                       *TRAIN])
  script = "\n".join(lines) + "\n"
  assert "#SBATCH --nodes=2" in script and "#SBATCH --gpus-per-node=8" in script
  assert "#SBATCH --ntasks-per-node=1" in script and "#SBATCH --signal=TERM@300" in script
  # Fake scontrol/srun: srun runs its command once per task with SLURM_PROCID set.
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "scontrol").write_text("#!/bin/bash\nprintf 'node-a\\nnode-b\\n'\n")
  (bin_dir / "srun").write_text(
      "#!/bin/bash\nshift\nfor i in 0 1; do SLURM_PROCID=$i \"$@\"; done\n")
  for f in bin_dir.iterdir():
    f.chmod(f.stat().st_mode | stat.S_IEXEC)
  (tmp_path / "job.sbatch").write_text(script)
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_NTASKS="2",
             SLURM_JOB_NODELIST="node-[a-b]")
  out = subprocess.run(["bash", str(tmp_path / "job.sbatch")], env=env, capture_output=True,
                       text=True, check=True).stdout.splitlines()
  assert len(out) == 2
  for i, line in enumerate(out):
    assert line.split()[-6:] == ["--coordinator", "node-a:12355", "--num_processes", "2",
                                 "--process_id", str(i)]
    assert "--config.mesh.fsdp=-1" in line


def test_bad_inputs_are_explained():
  with pytest.raises(ValueError, match="v5p-64, v6e-32"):
    L.TpuSlice("n", "z", "p", "tpu-64")
  with pytest.raises(ValueError, match="--env 'X' must look like NAME=value"):
    L.ssh_node_commands(["a"], 1, "~/r", "python", "c", "w", env=["X"])
  with pytest.raises(ValueError, match="--config.a.b=value"):
    L.train_argv("c", "w", overrides=["mesh.fsdp=2"])

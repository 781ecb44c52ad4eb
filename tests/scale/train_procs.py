"""Helpers for tests that run `launch/train.py` as separate processes (multi-host, signals)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(REPO, "launch", "train.py")
# Generous: XLA's CPU compile of the tiny teacher step takes ~30 s on an idle 2-core
# machine and several times that when the cores are shared.
TIMEOUT_S = float(os.environ.get("REALCAM_TEST_PROC_TIMEOUT", "900"))


def free_port() -> int:
  import portpicker
  return portpicker.pick_unused_port()


# One persistent compilation cache per test session: a restarted training (or the second
# process of a pair) compiles the same programs again.
_CACHE = os.path.join(tempfile.gettempdir(), f"realcam_test_jax_cache_{os.getpid()}")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


def env_for(local_devices: int) -> dict:
  """A CPU-only environment with `local_devices` fake devices (fast-compiling XLA)."""
  env = dict(os.environ)
  env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={local_devices} "
                       "--xla_backend_optimization_level=0",
             JAX_COMPILATION_CACHE_DIR=_CACHE, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return env


# `python -c` stand-in for `launch/train.py` whose stage sleeps before compiling its step:
# a host that restores or compiles much later than the others.
_SLOW_COMPILE = """
import runpy, sys, time
import realcam_jax.train.loop as loop
_train = loop.train
def train(*args, compile, **kwargs):
  def slow(*a):
    time.sleep({delay})
    return compile(*a)
  return _train(*args, compile=slow, **kwargs)
loop.train = train
sys.argv[0] = {train!r}
runpy.run_path({train!r}, run_name="__main__")
"""


class Proc:
  """A training subprocess with its log file.

  `compile_delay_s` > 0 makes the stage wait that long before compiling its step.
  """

  def __init__(self, args: list[str], log_path: str, local_devices: int,
               compile_delay_s: float = 0):
    self.args = args
    self.log_path = log_path
    self._log = open(log_path, "w")
    head = ([TRAIN] if not compile_delay_s else
            ["-c", _SLOW_COMPILE.format(delay=float(compile_delay_s), train=TRAIN)])
    self.popen = subprocess.Popen([sys.executable] + head + args, cwd=REPO,
                                  env=env_for(local_devices), stdout=self._log,
                                  stderr=subprocess.STDOUT)

  def log(self, tail: int = 3000) -> str:
    if not self._log.closed:
      self._log.flush()
    with open(self.log_path) as f:
      return f.read()[-tail:]

  def signal(self, sig=signal.SIGTERM):
    self.popen.send_signal(sig)

  def kill(self):
    if self.popen.poll() is None:
      self.popen.kill()
      self.popen.wait()
    self._log.close()


def train_args(config: str, workdir: str, num_steps: int, overrides=(), *,
               coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> list[str]:
  args = ["--config", config, "--workdir", workdir, "--num_steps", str(num_steps), *overrides]
  if coordinator is not None:
    args += ["--coordinator", coordinator, "--num_processes", str(num_processes),
             "--process_id", str(process_id)]
  return args


def wait_all(procs: list[Proc], timeout: float = TIMEOUT_S) -> list[int]:
  """Exit codes of all processes; kills them all and fails with their logs on a hang."""
  deadline = time.time() + timeout
  try:
    for p in procs:
      remaining = max(deadline - time.time(), 0.1)
      try:
        p.popen.wait(timeout=remaining)
      except subprocess.TimeoutExpired:
        raise AssertionError(f"training processes did not finish within {timeout:.0f} s; "
                             f"logs:\n" + "\n---\n".join(q.log() for q in procs)) from None
    return [p.popen.returncode for p in procs]
  finally:
    for p in procs:
      p.kill()


def metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      if line.endswith("\n"):   # skip a line being written
        rows.append(json.loads(line))
  return rows


def wait_for_step(workdir: str, step: int, procs: list[Proc], timeout: float = TIMEOUT_S):
  """Polls metrics.jsonl until it has a row with `step` or later; fails if a process exits."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    rows = metrics(workdir)
    if rows and rows[-1]["step"] >= step:
      return rows[-1]["step"]
    for p in procs:
      if p.popen.poll() is not None:
        for q in procs:
          q.kill()
        raise AssertionError(f"a training process exited with {p.popen.returncode} before "
                             f"step {step}; log:\n{p.log()}")
    time.sleep(0.2)
  for p in procs:
    p.kill()
  raise AssertionError(f"no step {step} in {workdir}/metrics.jsonl after {timeout:.0f} s; "
                       "logs:\n" + "\n---\n".join(p.log() for p in procs))


def checkpoint_steps(workdir: str) -> list[int]:
  d = os.path.join(workdir, "ckpt")
  if not os.path.isdir(d):
    return []
  # Orbax writes into `<step>.orbax-checkpoint-tmp-*` and renames when complete.
  return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def read_state(workdir: str, step: int) -> dict:
  """The saved train state at `step` as a nested dict of numpy arrays (any device count)."""
  import jax
  import orbax.checkpoint as ocp
  path = os.path.join(workdir, "ckpt", str(step), "state")
  ckptr = ocp.PyTreeCheckpointer()
  tree = ckptr.metadata(path).item_metadata.tree
  args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return ckptr.restore(path, restore_args=args)

"""Two CPU processes on localhost (JAX distributed runtime, gloo collectives) == one process.

One scenario, three checks. Two `launch/train.py` processes with 2 devices each train
the tiny teacher with the parameters and optimizer state sharded over all 4 devices
(`fsdp=4`, so every checkpoint holds shards written by both processes):
  1. SIGTERM to process 1 only: both processes agree on a step (JAX's preemption sync
     service), save one checkpoint there and exit 0;
  2. restarted, both restore their shards and the data-iterator state and continue, though
     process 1 starts compiling 40 s after process 0 (longer than the 30 s gloo gives a
     late peer: the loop compiles ahead and waits at a barrier before the first step);
  3. a single process with the same 4 devices and global batch trained straight to the
     same step reaches the same parameters and losses.
A second test does the same comparison for two DMD iterations of the tiny student.
"""

import os
import signal

import jax
import numpy as np
import pytest

import train_procs as tp

CONFIG = "configs/teacher.py:tiny"
OVERRIDES = ["--config.mesh.data=1", "--config.mesh.fsdp=-1", "--config.train.ckpt_every=1000",
             "--config.train.log_every=1"]
EXTRA_STEPS = 2
COMPILE_DELAY_S = 40


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("multihost")
  two, one = str(root / "two"), str(root / "one")

  def pair(num_steps, tag, delay=0):
    coordinator = f"127.0.0.1:{tp.free_port()}"
    return [tp.Proc(tp.train_args(CONFIG, two, num_steps, OVERRIDES, coordinator=coordinator,
                                  num_processes=2, process_id=i),
                    str(root / f"{tag}{i}.log"), local_devices=2,
                    compile_delay_s=delay if i == 1 else 0) for i in range(2)]

  procs = pair(1000, "first")
  tp.wait_for_step(two, 2, procs)
  procs[1].signal(signal.SIGTERM)
  first_rc = tp.wait_all(procs)
  first_logs = [p.log() for p in procs]
  first_metrics = tp.metrics(two)
  stopped_at = first_metrics[-1]["step"]
  first_ckpts = tp.checkpoint_steps(two)

  final = stopped_at + EXTRA_STEPS
  procs = pair(final, "second", delay=COMPILE_DELAY_S) + [
      tp.Proc(tp.train_args(CONFIG, one, final, OVERRIDES), str(root / "one.log"), 4)]
  second_rc = tp.wait_all(procs)
  return dict(two=two, one=one, first_rc=first_rc, first_logs=first_logs,
              stopped_at=stopped_at, first_ckpts=first_ckpts, second_rc=second_rc,
              second_logs=[p.log() for p in procs], final=final)


def test_sigterm_to_one_process_stops_all_at_one_step(runs):
  assert runs["first_rc"] == [0, 0], "\n---\n".join(runs["first_logs"])
  assert runs["first_ckpts"] == [runs["stopped_at"]]
  assert "saved checkpoint at step" in runs["first_logs"][0]
  assert "saved checkpoint at step" not in runs["first_logs"][1]   # messages from process 0


def test_restart_restores_sharded_state_and_continues(runs):
  assert runs["second_rc"] == [0, 0, 0], "\n---\n".join(runs["second_logs"])
  steps = [r["step"] for r in tp.metrics(runs["two"])]
  assert steps == list(range(1, runs["final"] + 1)), steps
  assert tp.checkpoint_steps(runs["two"]) == [runs["stopped_at"], runs["final"]]


def test_two_processes_equal_one_process(runs):
  assert runs["second_rc"] == [0, 0, 0], "\n---\n".join(runs["second_logs"])
  two = tp.read_state(runs["two"], runs["final"])
  one = tp.read_state(runs["one"], runs["final"])
  assert int(two["step"]) == int(one["step"]) == runs["final"]
  # Cross-process (gloo) and in-process all-reduces may sum in another order: allow
  # float32 round-off, nothing more.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               two["params"], one["params"])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
               two["opt_state"], one["opt_state"])
  losses = lambda d: [r["loss"] for r in tp.metrics(d)]
  np.testing.assert_allclose(losses(runs["two"]), losses(runs["one"]), rtol=1e-5)


DMD_CONFIG = "configs/student.py:tiny"
DMD_OVERRIDES = ["--config.stages=('dmd',)", "--config.mesh.data=1", "--config.mesh.fsdp=-1"]


def test_dmd_iterations_two_processes_equal_one(tmp_path):
  """Two DMD iterations of the tiny student (a critic update, then a generator + EMA +
  critic update: `student.gen_every=2`) on 2 processes x 2 devices == 1 process x 4."""
  two, one = str(tmp_path / "two"), str(tmp_path / "one")
  coordinator = f"127.0.0.1:{tp.free_port()}"
  procs = [tp.Proc(tp.train_args(DMD_CONFIG, two, 2, DMD_OVERRIDES, coordinator=coordinator,
                                 num_processes=2, process_id=i),
                   str(tmp_path / f"two{i}.log"), local_devices=2) for i in range(2)]
  procs.append(tp.Proc(tp.train_args(DMD_CONFIG, one, 2, DMD_OVERRIDES),
                       str(tmp_path / "one.log"), local_devices=4))
  assert tp.wait_all(procs) == [0, 0, 0], "\n---\n".join(p.log() for p in procs)
  rows = tp.metrics(os.path.join(two, "dmd"))
  assert [r["step"] for r in rows] == [1, 2] and "dmd_loss" in rows[1]
  a = tp.read_state(os.path.join(two, "dmd"), 2)
  b = tp.read_state(os.path.join(one, "dmd"), 2)
  for part in ("gen_params", "critic_params", "ema_params", "gen_opt", "critic_opt"):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
                 a[part], b[part])
  np.testing.assert_allclose([r["loss"] for r in rows],
                             [r["loss"] for r in tp.metrics(os.path.join(one, "dmd"))], rtol=1e-5)

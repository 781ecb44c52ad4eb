"""SIGTERM (as sent before TPU maintenance) saves a checkpoint and exits 0; a restart resumes."""

import signal

import train_procs as tp

CONFIG = "configs/teacher.py:tiny"
# Checkpoints only on the signal (and at the end): the saved step is the one reached.
OVERRIDES = ["--config.train.ckpt_every=1000", "--config.train.log_every=1"]


def test_sigterm_saves_and_restart_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  proc = tp.Proc(tp.train_args(CONFIG, workdir, 1000, OVERRIDES), str(tmp_path / "a.log"), 1)
  tp.wait_for_step(workdir, 2, [proc])
  proc.signal(signal.SIGTERM)
  (rc,) = tp.wait_all([proc])
  log = proc.log()
  assert rc == 0, log
  reached = tp.metrics(workdir)[-1]["step"]
  assert 2 <= reached < 1000
  assert tp.checkpoint_steps(workdir) == [reached], log
  assert f"received signal {int(signal.SIGTERM)}: saved checkpoint at step {reached}" in log

  # Restart with a larger budget: resumes at the saved step and runs to the end.
  proc = tp.Proc(tp.train_args(CONFIG, workdir, reached + 2, OVERRIDES),
                 str(tmp_path / "b.log"), 1)
  (rc,) = tp.wait_all([proc])
  assert rc == 0, proc.log()
  steps = [r["step"] for r in tp.metrics(workdir)]
  assert steps == list(range(1, reached + 3)), steps   # continues at reached + 1, no repeats
  assert tp.checkpoint_steps(workdir) == [reached, reached + 2]
  assert int(tp.read_state(workdir, reached + 2)["step"]) == reached + 2

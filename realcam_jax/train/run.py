"""Entry point for every training stage: `run(config, workdir)` dispatches on `config.stage`.

A config with a non-empty `stages` tuple (the student: `("ode_pairs", "ode_init", "dmd")`)
runs those stages in order, stage s in `workdir/s` with `train.num_steps =
config.stage_steps[s]` (`num_steps`, when given, overrides every stage's count). A stage
module may define `prepare_config(config, workdir) -> config` to link to earlier stages
(DMD starts from `workdir/ode_init`). A training stage provides `init` and `compile_step`
for `train.loop` (and optionally `make_data_iterator(config, workdir)`; default
`data.make_iterator`); any other stage provides `run(config, workdir, num_steps) ->
(graphdef, state, info)` (`ode_pairs`: the teacher's ODE pairs, a no-op when
`student.ode_pairs` is 0; ode_init reads them from the sibling `workdir/ode_pairs`).
Each stage resumes from what it wrote, so re-running the same command after a kill
continues where it stopped.
"""

from __future__ import annotations

import importlib
import os

STAGES = {
    "teacher": "realcam_jax.train.teacher",
    "ode_pairs": "realcam_jax.train.ode_pairs",
    "ode_init": "realcam_jax.train.ode_init",
    "dmd": "realcam_jax.train.dmd",
}


def _module(stage):
  if stage not in STAGES:
    raise ValueError(f"stage {stage!r} is not known; expected one of {sorted(STAGES)}")
  return importlib.import_module(STAGES[stage])


def stage_config(config, stage: str, workdir: str):
  """The config of one stage of a multi-stage run rooted at `workdir`."""
  sub = config.copy_and_resolve_references()
  sub.stage = stage
  steps = config.get("stage_steps", {}).get(stage)
  if steps is not None:
    sub.train.num_steps = int(steps)
  module = _module(stage)
  return module.prepare_config(sub, workdir) if hasattr(module, "prepare_config") else sub


def run_stage(config, workdir: str, num_steps: int | None = None):
  stage = config.get("stage")
  if stage not in STAGES:
    raise ValueError(f"config.stage is {stage!r}; expected one of {sorted(STAGES)}")
  module = _module(stage)
  if hasattr(module, "run"):
    return module.run(config, workdir, num_steps)
  from realcam_jax.train import data, loop
  if hasattr(module, "make_data_iterator"):
    data_iter = module.make_data_iterator(config, workdir)
  else:
    data_iter = data.make_iterator(config)
  return loop.train(config, workdir, init=module.init, compile=module.compile_step,
                    data_iter=data_iter, num_steps=num_steps, desc=stage)


def run(config, workdir: str, num_steps: int | None = None):
  """Runs `config.stages` in order (or the single `config.stage`); returns the last
  stage's (graphdef, state, info)."""
  stages = tuple(config.get("stages") or ())
  if not stages:
    return run_stage(config, workdir, num_steps)
  out = None
  for stage in stages:
    out = run_stage(stage_config(config, stage, workdir), os.path.join(workdir, stage), num_steps)
    if out[2].get("stopped_by_signal"):
      break
  return out

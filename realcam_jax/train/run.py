"""Entry point for every training stage: `run(config, workdir)` dispatches on `config.stage`."""

from __future__ import annotations

import importlib

STAGES = {
    "teacher": "realcam_jax.train.teacher",
}


def run(config, workdir: str, num_steps: int | None = None):
  stage = config.get("stage")
  if stage not in STAGES:
    raise ValueError(f"config.stage is {stage!r}; expected one of {sorted(STAGES)}")
  module = importlib.import_module(STAGES[stage])
  from realcam_jax.train import data, loop
  data_iter = data.make_iterator(config)
  return loop.train(config, workdir, init=module.init, compile=module.compile_step,
                    data_iter=data_iter, num_steps=num_steps, desc=stage)

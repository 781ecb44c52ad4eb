"""The training loop every stage shares: resume, data, jit, logging, checkpoints, signals.

A stage provides `init(config, mesh) -> (graphdef, state, state_shardings, aux)` and
`compile(graphdef, config, aux, state_shardings, mesh, batch_example) -> step_fn`
where `step_fn(state, batch) -> (state, metrics)`.

Behaviour:
  - resumes from the latest checkpoint in `workdir/ckpt` (state + data iterator), so a
    killed run continues exactly where its last checkpoint left it; `train.init_from`
    (pretrained weights for step 0, e.g. the teacher's Wan2.1 backbone) is then not read:
    `init` gets the config with it cleared; a checkpoint written with EMA weights switched
    the other way is migrated (`restore`);
  - metrics every `train.log_every` steps to `workdir/metrics.jsonl` and TensorBoard;
  - a non-finite loss stops the run with a message; no checkpoint is written after
    the last finite one, so the last good checkpoint is what remains;
  - SIGTERM/SIGINT (preemption) saves a checkpoint at the next step boundary and exits;
    with several processes they agree on that step (`scale.multihost.StopRequest`);
  - multi-host: every process feeds its block of the global batch, all processes save
    and restore their shards of the state (Orbax), process 0 alone writes metrics,
    progress and the config JSON; the step is compiled ahead and the processes wait
    for each other before the first one (`scale.multihost.barrier`);
  - `config.mesh.rules` picks the logical-axis rule table for activations
    (`default`, or `context` for sequence-sharded attention on long sequences).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import jax
import numpy as np

from realcam_jax import sharding
from realcam_jax.ckpt.manager import Checkpointer, abstract_like
from realcam_jax.config import to_json
from realcam_jax.scale import multihost
from realcam_jax.train import common
from realcam_jax.train import state as st


def to_global(batch: dict, mesh) -> dict:
  """Process-local numpy batch -> global jax arrays sharded on the batch axis."""
  return {k: jax.make_array_from_process_local_data(sharding.batch_sharding(mesh, np.ndim(v)),
                                                    np.asarray(v))
          for k, v in batch.items()}


def _init_config(config, resume_step: int | None):
  """The config for `init`: `train.init_from` cleared when the run resumes (it restores
  its own checkpoint instead, so the pretrained directory is neither read nor needed)."""
  if resume_step is None or not config.train.get("init_from"):
    return config
  if multihost.is_main_process():
    print(f"resuming from step {resume_step}: train.init_from={config.train.init_from!r} is "
          f"not read (it only starts a fresh run)", flush=True)
  config = config.copy_and_resolve_references()
  config.train.init_from = ""
  return config


def restore(ckpt: Checkpointer, state, state_sh, data_iter=None):
  """The latest checkpoint restored into the structure of `state` (with `state_sh`).

  A state with an `ema_params` field may meet a checkpoint from a run with the EMA
  switched the other way (`train.ema_decay` changed between runs): a checkpoint without
  EMA weights starts the EMA from its params; EMA weights the run no longer keeps are
  dropped. Either case is printed.
  """
  target = abstract_like(state, state_sh)
  want = getattr(state, "ema_params", None) is not None
  saved = "ema_params" in ckpt.state_keys() if hasattr(state, "ema_params") else want
  if saved != want:
    ema_abs = (abstract_like(jax.eval_shape(st.ema_init, state.params), state_sh.params)
               if saved else None)
    target = target.replace(ema_params=ema_abs)
  state, _, step = ckpt.restore(target, data_iter=data_iter)
  if saved != want:
    if want:
      state = state.replace(ema_params=jax.jit(st.ema_init, out_shardings=state_sh.ema_params)(
          state.params))
    else:
      state = state.replace(ema_params=None)
    if multihost.is_main_process():
      print(f"checkpoint step {step} " + ("has no EMA weights: the EMA starts from its params"
                                          if want else "has EMA weights this run does not keep "
                                          "(train.ema_decay = 0): they are dropped"), flush=True)
  return state


def train(config, workdir: str, *, init: Callable, compile: Callable, data_iter,
          num_steps: int | None = None, desc: str = "train") -> tuple[Any, Any, dict]:
  """Runs a stage until `num_steps` (default `config.train.num_steps`).

  Returns (graphdef, state, info) with info = {"stopped_by_signal": bool, "last_step": int}.
  """
  import json
  num_steps = int(config.train.num_steps if num_steps is None else num_steps)
  mesh = sharding.make_mesh(config.mesh)
  rules = sharding.rules_for(config.mesh.get("rules", "default"))
  multihost.check_batch_layout(mesh, int(config.train.batch_size), rules)
  ckpt = Checkpointer(os.path.join(workdir, "ckpt"), max_to_keep=config.train.get("keep", 3),
                      with_data=hasattr(data_iter, "get_state"))
  writer = common.MetricWriter(multihost.metrics_dir(workdir))  # process 0 only
  cfg_dict = json.loads(to_json(config))
  info = {"stopped_by_signal": False, "last_step": 0}
  # Built outside the mesh context: flax's eval_shape would otherwise try to turn the
  # logical axis names into mesh shardings; `init` applies the rules table explicitly.
  last_good = ckpt.latest_step()
  graphdef, state, state_sh, aux = init(_init_config(config, last_good), mesh)
  with jax.set_mesh(mesh), sharding.use_rules(rules), multihost.StopRequest() as stop:
    if last_good is not None:
      state = restore(ckpt, state, state_sh, data_iter)
    step = int(jax.device_get(state.step))
    step_fn = None
    bar = common.progress(num_steps, step, desc)
    t0, n0 = time.time(), step
    try:
      while step < num_steps:
        batch = to_global(next(data_iter), mesh)
        if step_fn is None:
          step_fn = compile(graphdef, config, aux, state_sh, mesh, batch)
          if jax.process_count() > 1:
            # Processes finish restore and compile at different times; the first
            # step's collectives give late peers only 30 s (gloo), so compile first
            # and start together.
            common.precompile(step_fn, state, batch)
            multihost.barrier(f"realcam_{desc}_first_step_{step}")
        state, metrics = step_fn(state, batch)
        step += 1
        bar.update(1)
        if step % config.train.log_every == 0 or step == num_steps:
          metrics = jax.device_get(metrics)
          common.check_finite(step, {"loss": metrics["loss"]}, last_good)
          rate = (step - n0) / max(time.time() - t0, 1e-9)
          bar.set_postfix(loss=f"{float(metrics['loss']):.4f}", steps_s=f"{rate:.2f}")
          writer.write(step, dict(metrics, steps_per_s=rate))
        stopping = stop.should_stop(step)  # every process, every step (a sync point)
        if step % config.train.ckpt_every == 0 or step == num_steps or stopping:
          common.check_finite(step, {"loss": jax.device_get(metrics["loss"])}, last_good)
          ckpt.save(step, state, cfg_dict, data_iter, force=True)
          last_good = step
        if stopping:
          info["stopped_by_signal"] = True
          if multihost.is_main_process():
            bar.write(f"received signal {stop.signal}: saved checkpoint at step {step}, exiting")
          break
    finally:
      bar.close()
      ckpt.close()
      writer.close()
  info["last_step"] = step
  return graphdef, state, info

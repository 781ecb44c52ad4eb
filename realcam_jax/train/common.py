"""Pieces every trainer shares: optimizer, metric writers, progress, NaN guard."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax


def jit_train_step(step, state_shardings, mesh, batch_example: Mapping[str, Any]):
  """`jax.jit` of `step(state, batch) -> (state, metrics)` with explicit shardings.

  The batch is split over the data axes, metrics are replicated and the state is
  donated (updated in place).
  """
  from realcam_jax import sharding
  batch_sh = jax.tree.map(lambda x: sharding.batch_sharding(mesh, x.ndim), batch_example)
  return jax.jit(step, in_shardings=(state_shardings, batch_sh),
                 out_shardings=(state_shardings, sharding.replicated(mesh)),
                 donate_argnums=(0,))


def gradient_step(loss_fn, state, optimizer: optax.GradientTransformation, *args):
  """One optimizer step on `loss_fn(params, *args) -> (loss, metrics)`.

  Returns the next state (same TrainState type, step + 1) and the metrics with the
  gradient's global norm added as `grad_norm`.
  """
  (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, *args)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return (state.replace(step=state.step + 1, params=params, opt_state=opt_state),
          dict(metrics, grad_norm=optax.tree.norm(grads)))


def ema_update(ema, params, step, decay: float, start: int):
  """fp32 EMA: a copy of params while step < start, then decay * ema + (1 - decay) * params."""
  def one(e, p):
    p = p.astype(jnp.float32)
    return jnp.where(step < start, p, decay * e + (1.0 - decay) * p)
  return jax.tree.map(one, ema, params)


def ema_enabled(train_config) -> bool:
  """Whether a stage keeps EMA weights (`train.ema_decay` > 0); raises on a decay outside [0, 1)."""
  decay = float(train_config.get("ema_decay", 0.0))
  if not 0.0 <= decay < 1.0:
    raise ValueError(f"train.ema_decay={decay} must be in [0, 1) (0 = no EMA weights)")
  return decay > 0.0


def with_ema(state, train_config):
  """`state` (after its optimizer step) with `ema_params` updated at its new step; the
  EMA copies params until `train.ema_start` steps are done. Unchanged when EMA is off."""
  if state.ema_params is None:
    return state
  return state.replace(ema_params=ema_update(state.ema_params, state.params, state.step,
                                             float(train_config.ema_decay),
                                             int(train_config.get("ema_start", 0)) + 1))


class BoundStep:
  """`jitted(state, *bound, batch)` called as `step(state, batch)` (teacher params bound).

  `precompile(state, batch)` compiles it ahead of the first call (see `precompile`).
  """

  def __init__(self, jitted, *bound):
    self.jitted, self.bound = jitted, bound

  def __call__(self, state, batch):
    return self.jitted(state, *self.bound, batch)

  def precompile(self, state, batch) -> None:
    self.jitted.lower(state, *self.bound, batch).compile()


def precompile(step_fn, state, batch) -> bool:
  """Compiles `step_fn(state, batch)` without running it; False if it cannot say how.

  A `jax.jit` function is lowered and compiled (the call that follows reuses that
  executable); other step functions may offer `precompile(state, batch)`.
  """
  if hasattr(step_fn, "precompile"):
    step_fn.precompile(state, batch)
    return True
  if hasattr(step_fn, "lower"):
    step_fn.lower(state, batch).compile()
    return True
  return False


def make_optimizer(opt_config) -> optax.GradientTransformation:
  """AdamW with linear warm-up (then constant or cosine) and global-norm clipping.

  Fields: lr, warmup_steps, schedule (constant | cosine), total_steps, b1, b2,
  weight_decay, clip_norm (0 = off).
  """
  lr = float(opt_config.lr)
  warm = int(opt_config.get("warmup_steps", 0))
  kind = opt_config.get("schedule", "constant")
  if kind == "constant":
    sched = optax.join_schedules(
        [optax.linear_schedule(0.0, lr, max(warm, 1)), optax.constant_schedule(lr)], [warm]
    ) if warm else optax.constant_schedule(lr)
  elif kind == "cosine":
    sched = optax.warmup_cosine_decay_schedule(
        0.0, lr, max(warm, 1), max(int(opt_config.total_steps), warm + 1), end_value=0.1 * lr)
  else:
    raise ValueError(f"unknown lr schedule {kind!r}; expected constant or cosine")
  parts = []
  clip = float(opt_config.get("clip_norm", 0.0))
  if clip > 0:
    parts.append(optax.clip_by_global_norm(clip))
  parts.append(optax.adamw(sched, b1=float(opt_config.get("b1", 0.9)),
                           b2=float(opt_config.get("b2", 0.999)),
                           weight_decay=float(opt_config.get("weight_decay", 0.0))))
  return optax.chain(*parts)


class MetricWriter:
  """Writes scalars to `metrics.jsonl` and TensorBoard event files (process 0 only)."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled and jax.process_index() == 0
    self._jsonl = None
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(os.path.join(workdir, "tb"))

  def write(self, step: int, scalars: Mapping[str, Any]):
    if not self.enabled:
      return
    row = {"step": int(step), "time": time.time()}
    for k, v in scalars.items():
      v = float(np.asarray(v))
      row[k] = v
      self._tb.add_scalar(k, v, int(step))
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()

  def close(self):
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


class NonFiniteLossError(RuntimeError):
  pass


def check_finite(step: int, metrics: Mapping[str, Any], last_good_step: int | None):
  """Raises NonFiniteLossError naming the metric and the checkpoint kept."""
  for k, v in metrics.items():
    v = float(np.asarray(v))
    if not math.isfinite(v):
      raise NonFiniteLossError(
          f"{k} became {v} at step {step}; stopping. The last good checkpoint "
          f"(step {last_good_step}) is kept; lower the learning rate or check the data, "
          "then resume.")


def progress(total: int, initial: int = 0, desc: str = "train"):
  from tqdm.auto import tqdm
  return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True,
              disable=jax.process_index() != 0)

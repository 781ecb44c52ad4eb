"""ODE initialisation of the causal student (stage 'ode_init'; CausVid-style regression).

Per batch, inside the jitted step:
  1. the frozen teacher (bidirectional, whole sequence, CFG `student.ode_cfg`) integrates
     its probability-flow ODE from noise with `student.ode_steps` Euler steps at shift
     `student.ode_shift` (`sampler.euler_trajectory`); the latents at the levels nearest
     to the student's levels are kept, with the trajectory's end x0;
  2. each chunk of each sample picks an independent student level; the student runs one
     block-causal forward (per-frame sigma) on that mix of trajectory latents. What the
     later chunks attend to is `student.ode_history`:
       independent  the earlier chunks' own noisy inputs (CausVid; each at its level,
                    so never cleaner than the lowest student level, sigma 0.625);
       clean        the earlier chunks committed clean (the trajectory's x0 at sigma 0),
                    as a stream sees its finished chunks (Self-Forcing's teacher-forcing
                    variant; the sequence carries a clean copy of every chunk, about
                    twice the tokens; the default, docs/pilots.md 2026-12-07);
     with `student.source_once` each chunk's sources do not attend to its targets, as
     in a `source_once` stream (`causal.full_block_causal(source_once=True)`);
  3. loss = MSE between the student's x0 prediction and the trajectory's x0, target
     frames only.
The model is fed the trajectory's own level (the nearest Euler level) for each latent.

With `student.ode_pairs > 0` step 1 was done once beforehand by the stage 'ode_pairs'
(`train.ode_pairs`): the batches are stored pairs (conditioning + trajectory) read from
`ode_pairs.pairs_dir` (the sibling `WORKDIR/ode_pairs` in a multi-stage run), the loss
is `pairs_loss_fn`, and the step never sees the teacher. Both losses share
`regression_loss` (steps 2-3).

The teacher's params are a constant input of the online step (never in an optimizer);
the student starts as a copy of them. Teacher params come from `student.teacher_ckpt`:
a teacher training workdir (latest step), a converted/exported `orbax_io` directory,
or "" = initialised from `config.teacher.seed` (tests).
"""

from __future__ import annotations

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from realcam_jax import sharding
from realcam_jax.diffusion import sampler, schedule
from realcam_jax.inference import student as student_inf
from realcam_jax.models import causal, layout
from realcam_jax.models.realcam import RealCamDiT
from realcam_jax.train import rollout
from realcam_jax.train import state as st
from realcam_jax.train.common import BoundStep, make_optimizer


def build_model(config):
  return lambda rngs: RealCamDiT(config.model, rngs=rngs)


# ----------------------------------------------------------------------------- parameters

def _abstract_target(abs_params, param_sh, wrap_value: bool):
  """Nested dict {path: ShapeDtypeStruct} (optionally under {'value': ...}) for restore."""
  flat = nnx.to_flat_state(abs_params)
  sh = jax.tree.leaves(param_sh, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
  target = {}
  for (path, var), s in zip(flat, sh):
    v = var.get_value() if isinstance(var, nnx.Variable) else var
    node = target
    for k in path[:-1]:
      node = node.setdefault(k, {})
    sds = jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s)
    node[path[-1]] = {"value": sds} if wrap_value else sds
  return flat, target


def restore_train_params(ckpt_dir: str, abs_params, param_sh, keys=("params",)):
  """Params of the latest step of a training `Checkpointer` dir (partial restore).

  `keys`: candidate names of the params subtree in the saved state, first found wins
  ('params' for TrainState, 'ema_params' / 'gen_params' for a DMD state).
  """
  import orbax.checkpoint as ocp
  from realcam_jax.ckpt.manager import Checkpointer
  ckpt = Checkpointer(ckpt_dir, with_data=False)
  try:
    step = ckpt.latest_step()
  finally:
    ckpt.close()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {ckpt_dir!r}; train that stage first or fix the path")
  path = os.path.join(ckpt_dir, str(step), "state")
  flat, target = _abstract_target(abs_params, param_sh, wrap_value=True)
  with ocp.PyTreeCheckpointer() as ckptr:
    saved = ckptr.metadata(path).item_metadata.tree
    key = next((k for k in keys if saved.get(k) is not None), None)   # None: a field saved empty
    if key is None:
      raise ValueError(f"checkpoint {path!r} has none of {list(keys)} (it holds {sorted(saved)})")
    restore_args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(dtype=s.dtype, sharding=s.sharding),
                                target)
    try:
      out = ckptr.restore(path, args=ocp.args.PyTreeRestore(
          item={key: target}, restore_args={key: restore_args}, partial_restore=True))[key]
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(f"checkpoint {path!r} does not match the model in config.model: {e}") from e
  out_flat = []
  for p, var in flat:
    node = out
    for k in p:
      node = node[k]
    out_flat.append((p, var.replace(value=node["value"])))
  return nnx.from_flat_state(out_flat), step


def load_params(path: str, abs_params, param_sh, keys=("params",)):
  """Params from a training workdir (`path/ckpt`), a `Checkpointer` dir or an `orbax_io` dir."""
  from realcam_jax.ckpt import orbax_io
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, orbax_io.STATE_DIR)) and os.path.isfile(
      os.path.join(path, orbax_io.CONFIG_FILE)):
    return orbax_io.load_state(path, abs_params, param_sh)
  if os.path.isdir(os.path.join(path, "ckpt")):
    return restore_train_params(os.path.join(path, "ckpt"), abs_params, param_sh, keys)[0]
  if os.path.isdir(path) and any(d.isdigit() for d in os.listdir(path)):
    return restore_train_params(path, abs_params, param_sh, keys)[0]
  raise FileNotFoundError(
      f"{path!r} is not a checkpoint: expected a training workdir (with ckpt/), a checkpoint "
      f"manager directory (numbered steps) or a converted directory (state/ + config.json)")


# A teacher training checkpoint's weights: its EMA when it keeps one, else its params.
TEACHER_KEYS = ("ema_params", "params")


def load_teacher_params(config, abs_params, param_sh):
  """The frozen teacher's params, sharded like the model (see module docstring)."""
  path = config.student.teacher_ckpt
  if path:
    return load_params(path, abs_params, param_sh, keys=TEACHER_KEYS)
  seed = config.teacher.get("seed", config.seed)
  logging.warning("student.teacher_ckpt is empty: the teacher is initialised from seed %d (its "
                  "zero-initialised output head predicts 0 everywhere; for tests only)", seed)
  init = lambda: st.split_model(build_model(config)(nnx.Rngs(seed)))[1]  # noqa: E731
  return jax.jit(init, out_shardings=param_sh)()


def abstract_params(config, mesh):
  """(graphdef, abstract params, param shardings) of the shared architecture."""
  causal.check_causal_model(config.model)
  graphdef, abs_params = st.abstract_model(build_model(config), config.seed)
  return graphdef, abs_params, sharding.state_shardings(abs_params, mesh)


# ----------------------------------------------------------------------------- teacher ODE

def guided_velocity(model, source, x_t, sigma, camera, text, scale: float,
                    uncond_text=None, anchor=None) -> jax.Array:
  """Bidirectional velocity of the target frames with CFG: f32[B, F, h, w, C].

  The conditional and unconditional branches run as one batch. The unconditional one
  drops the camera and sees `uncond_text` (Wan's empty-prompt encoding, [B or 1, Lt, Dt];
  the batch's `text_uncond`) instead of `text`, zeros when it is None. `anchor`: a
  "warped_source" model's anchor [B, F, h, w, C] (both branches), or None.
  """
  b = source.shape[0]
  if scale == 1.0:
    v = model(source, x_t, sigma, camera, text, anchor=anchor)
    return layout.split(v, model.cfg.layout)[1].astype(jnp.float32)
  two = lambda a: None if a is None else jnp.concatenate([a, a], axis=0)  # noqa: E731
  cond = jnp.concatenate([jnp.ones((b,)), jnp.zeros((b,))]).astype(jnp.float32)
  unc = None
  if uncond_text is not None and text is not None:
    unc = two(jnp.broadcast_to(uncond_text, text.shape))
  v = model(two(source), two(x_t), two(sigma), two(camera), two(text), cond_mask=cond,
            uncond_text=unc, anchor=two(anchor))
  v = layout.split(v, model.cfg.layout)[1].astype(jnp.float32)
  c, u = v[:b], v[b:]
  return u + scale * (c - u)


def trajectory_levels(config) -> tuple[np.ndarray, np.ndarray]:
  """(indices int[n], sigmas f32[n]): Euler levels nearest to the student's n levels."""
  s = config.student
  with jax.ensure_compile_time_eval():       # static: callable inside jit
    euler = np.asarray(schedule.euler_sigmas(int(s.ode_steps), float(s.ode_shift)))
    targets = np.asarray(student_inf.student_sigmas(config))
  idx = np.abs(euler[None, :] - targets[:, None]).argmin(axis=1)
  return idx, euler[idx].astype(np.float32)


def ode_targets(teacher, config, source, camera, text, key, uncond_text=None, anchor=None):
  """Teacher trajectory from noise: (latents f32[n, B, F, h, w, C] at the kept levels,
  their sigmas f32[n], the trajectory's x0 f32[B, F, h, w, C]); no gradient. CFG's
  unconditional branch sees `uncond_text` (`guided_velocity`)."""
  s = config.student
  sigmas = schedule.euler_sigmas(int(s.ode_steps), float(s.ode_shift))
  noise = jax.random.normal(key, source.shape, jnp.float32)
  vel = lambda x, sig: guided_velocity(teacher, source, x, sig, camera, text,  # noqa: E731
                                       float(s.ode_cfg), uncond_text, anchor)
  traj = sampler.euler_trajectory(vel, noise, sigmas)                      # [S + 1, B, F, ...]
  idx, level_sigmas = trajectory_levels(config)
  return jax.lax.stop_gradient((traj[idx], jnp.asarray(level_sigmas), traj[-1]))


ODE_HISTORIES = ("independent", "clean")


def ode_history(config) -> str:
  """`student.ode_history` (see the module docstring), checked; configs written before the
  field existed trained with "independent"."""
  h = config.student.get("ode_history", "independent")
  if h not in ODE_HISTORIES:
    raise ValueError(f"unknown student.ode_history {h!r}; expected one of {ODE_HISTORIES}")
  return h


def mix_levels(latents, level_sigmas, key, chunk_pairs: int):
  """Each (sample, chunk) picks a level: (x_t [B, F, ...], sigma f32[B, F], level i32[B, F])."""
  n, b, f = latents.shape[:3]
  level = jax.random.randint(key, (b, f // chunk_pairs), 0, n)
  level = jnp.repeat(level, chunk_pairs, axis=1)                           # [B, F]
  x_t = jnp.take_along_axis(latents, level[None, :, :, None, None, None], axis=0)[0]
  return x_t, level_sigmas[level], level


def regression_loss(params, graphdef, config, conditions, latents, level_sigmas, x0_target,
                    key: jax.Array):
  """Level mixing + block-causal student forward + MSE to the trajectory's x0.

  conditions: (source, camera, text, anchor) of `rollout.conditions`; latents f32[n, B, F, h, w, C]
  at level_sigmas f32[n]; x0_target f32[B, F, h, w, C]. Returns (loss, metrics).
  """
  source, camera, text, anchor = conditions
  s = config.student
  x_t, sigma, _ = mix_levels(latents, level_sigmas, key, int(s.chunk_pairs))
  model = nnx.merge(graphdef, params)
  history = ode_history(config)
  v = causal.full_block_causal(model, source, x_t.astype(source.dtype), sigma, camera, text,
                               chunk_pairs=int(s.chunk_pairs), sink_chunks=int(s.sink_chunks),
                               window_chunks=int(s.window_chunks),
                               history_target=x0_target if history == "clean" else None,
                               source_once=causal.source_once(config), anchor=anchor)
  x0 = causal.target_x0(v, x_t, sigma, model.cfg)
  loss = jnp.mean(jnp.square(x0 - x0_target))
  return loss, {"loss": loss, "teacher_x0_std": jnp.std(x0_target)}


def loss_fn(params, graphdef, teacher_params, config, batch: dict, key: jax.Array):
  """ODE-regression loss with the teacher's trajectory computed here. Returns (loss, metrics)."""
  conditions = rollout.conditions(config, batch)
  k_traj, k_level = jax.random.split(key)
  teacher = nnx.merge(graphdef, teacher_params)
  source, camera, text, anchor = conditions
  latents, level_sigmas, x0_target = ode_targets(teacher, config, source, camera, text, k_traj,
                                                 batch.get("text_uncond"), anchor)
  return regression_loss(params, graphdef, config, conditions, latents, level_sigmas,
                         x0_target, k_level)


def pairs_loss_fn(params, graphdef, config, batch: dict, key: jax.Array):
  """ODE-regression loss on a batch of stored pairs (`train.ode_pairs`: the batch carries
  ode_latents f32[B, n, F, h, w, C] and ode_x0 f32[B, F, h, w, C]). With the same key,
  equal to `loss_fn` for the same trajectory. Returns (loss, metrics)."""
  _, k_level = jax.random.split(key)          # the level key `loss_fn` uses
  latents = jnp.moveaxis(batch["ode_latents"], 1, 0).astype(jnp.float32)
  level_sigmas = jnp.asarray(trajectory_levels(config)[1])
  return regression_loss(params, graphdef, config, rollout.conditions(config, batch), latents,
                         level_sigmas, batch["ode_x0"].astype(jnp.float32), k_level)


def uses_pairs(config) -> bool:
  """True when ode_init trains on stored pairs (`student.ode_pairs > 0`)."""
  return int(config.student.get("ode_pairs", 0)) > 0


# ----------------------------------------------------------------------------- trainer

def _apply_grads(optimizer, state: st.TrainState, loss):
  (_, metrics), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = dict(metrics, grad_norm=optax.tree.norm(grads))
  return st.TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def make_train_step(graphdef, config, optimizer: optax.GradientTransformation):
  """step(state, teacher_params, batch) -> (state, metrics); pure (teacher runs inside)."""
  root = jax.random.key(config.seed)

  def step(state: st.TrainState, teacher_params, batch: dict):
    key = jax.random.fold_in(root, state.step)
    return _apply_grads(optimizer, state, lambda p: loss_fn(p, graphdef, teacher_params,
                                                            config, batch, key))

  return step


def make_pairs_train_step(graphdef, config, optimizer: optax.GradientTransformation):
  """step(state, batch) -> (state, metrics) on stored pairs; pure, no teacher."""
  root = jax.random.key(config.seed)

  def step(state: st.TrainState, batch: dict):
    key = jax.random.fold_in(root, state.step)
    return _apply_grads(optimizer, state, lambda p: pairs_loss_fn(p, graphdef, config, batch,
                                                                  key))

  return step


def compile_step(graphdef, config, aux, state_shardings, mesh, batch_example: dict):
  """The jitted step (see `train.loop`): with the teacher's params bound, or on stored
  pairs (`uses_pairs`) without them."""
  batch_sh = jax.tree.map(lambda x: sharding.batch_sharding(mesh, x.ndim), batch_example)
  out_sh = (state_shardings, sharding.replicated(mesh))
  if uses_pairs(config):
    return jax.jit(make_pairs_train_step(graphdef, config, aux["optimizer"]),
                   in_shardings=(state_shardings, batch_sh), out_shardings=out_sh,
                   donate_argnums=(0,))
  jitted = jax.jit(make_train_step(graphdef, config, aux["optimizer"]),
                   in_shardings=(state_shardings, aux["param_shardings"], batch_sh),
                   out_shardings=out_sh, donate_argnums=(0,))
  return BoundStep(jitted, aux["teacher_params"])


def make_data_iterator(config, workdir: str):
  """The stage's batches: stored pairs (`ode_pairs.pairs_dir`) or the training data."""
  from realcam_jax.train import data, ode_pairs
  if uses_pairs(config):
    return ode_pairs.make_iterator(config, ode_pairs.pairs_dir(config, workdir))
  return data.make_iterator(config)


def init(config, mesh):
  """(graphdef, state, state_shardings, aux): student = copy of the teacher's params."""
  optimizer = make_optimizer(config.ode_optim)
  graphdef, abs_params, param_sh = abstract_params(config, mesh)
  teacher_params = load_teacher_params(config, abs_params, param_sh)

  def make(p):
    p = jax.tree.map(jnp.copy, p)    # own buffers: the state is donated, the teacher is not
    return st.TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=optimizer.init(p))

  abs_state = jax.eval_shape(make, teacher_params)
  state_sh = st.TrainState(step=sharding.replicated(mesh), params=param_sh,
                           opt_state=st.opt_state_shardings(abs_state.opt_state, abs_params,
                                                            param_sh, mesh))
  state = jax.jit(make, out_shardings=state_sh)(teacher_params)
  if uses_pairs(config):
    teacher_params = None          # the stored pairs replace the teacher: free its memory
  aux = dict(optimizer=optimizer, teacher_params=teacher_params, param_shardings=param_sh)
  return graphdef, state, state_sh, aux

"""Self-Forcing + DMD distillation of the causal student (stage 'dmd'; design.md §3).

State (`DMDState`): generator (student) params, critic params (initialised from the
teacher), both optimizer states, an fp32 EMA of the generator, the step. The frozen
teacher's params are a separate constant input of the step, sharded like the params;
they are in no optimizer.

One training iteration at step s:
  - generator update when (s + 1) % student.gen_every == 0 (so the critic gets
    gen_every - 1 updates first): a Self-Forcing rollout x (two-phase, gradient through
    each chunk's exit step), a noise level t ~ shift(U[dmd_sigma_min, dmd_sigma_max]),
    x_t = noised x; x0_real = teacher with CFG `student.real_cfg`, x0_fake = critic;
    loss = `dmd_loss.dmd_pseudo_loss(x, x0_real, x0_fake)`; then the EMA update;
  - critic update every iteration: a fresh no-grad rollout, flow-matching loss of the
    critic on those (detached) samples at a random shifted level, target frames only.
Both updates are separate pure functions (`make_updates`); the trainer jits them as two
functions (`compile_iterations`) and calls the generator's on generator steps only.

Metrics: 'critic_loss' every step, 'dmd_loss' and 'dmd_grad_norm' on generator steps;
'loss' is the critic loss (plus 0 * dmd_loss on generator steps, so a non-finite
generator loss also stops the run).
"""

from __future__ import annotations

import logging
import os

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from realcam_jax import sharding
from realcam_jax.diffusion import flow_matching as fm
from realcam_jax.diffusion import schedule
from realcam_jax.inference import student as student_inf
from realcam_jax.train import ode_init, rollout
from realcam_jax.train import state as st
from realcam_jax.train.common import BoundStep, ema_update, make_optimizer
from realcam_jax.train.dmd_loss import dmd_pseudo_loss


@flax.struct.dataclass
class DMDState:
  step: jax.Array        # i32[]
  gen_params: object     # nnx.State: the student (generator)
  critic_params: object  # nnx.State: the fake-score model
  gen_opt: object        # optax state of the generator
  critic_opt: object     # optax state of the critic
  ema_params: object     # nnx.State, f32: EMA of the generator


def is_generator_step(step: int, gen_every: int) -> bool:
  """Whether iteration `step` (0-based) updates the generator."""
  return (int(step) + 1) % int(gen_every) == 0


def _noise_level(key, b, f, shift, lo=0.0, hi=1.0):
  sigma = schedule.sample_training_sigmas(key, (b,), shift, lo, hi)
  return jnp.broadcast_to(sigma[:, None], (b, f))


def critic_loss_fn(critic_params, graphdef, config, batch: dict, x, key):
  """Flow-matching loss of the critic on detached student samples x f32[B, F, h, w, C]."""
  source, camera, text, anchor = rollout.conditions(config, batch)
  x = jax.lax.stop_gradient(x).astype(source.dtype)
  b, f = x.shape[:2]
  k_sigma, k_noise = jax.random.split(key)
  sigma = _noise_level(k_sigma, b, f, float(config.student.critic_shift))
  noise = jax.random.normal(k_noise, x.shape, jnp.float32).astype(x.dtype)
  critic = nnx.merge(graphdef, critic_params)
  v = ode_init.guided_velocity(critic, source, fm.add_noise(x, noise, sigma), sigma, camera, text,
                               1.0, anchor=anchor)
  loss, _ = fm.flow_matching_loss(v, fm.velocity_target(x, noise), jnp.ones((b, f)))
  return loss, {"critic_loss": loss}


def generator_loss_fn(gen_params, graphdef, critic_params, teacher_params, config, batch: dict,
                      key):
  """DMD pseudo-loss of a Self-Forcing rollout of the generator. Returns (loss, metrics)."""
  s = config.student
  source, camera, text, anchor = rollout.conditions(config, batch)
  k_roll, k_sigma, k_noise = jax.random.split(key, 3)
  spec = rollout.RolloutSpec.from_config(config)
  x, one = rollout.rollout(graphdef, gen_params, source, camera, text, k_roll,
                           student_inf.student_sigmas(config), spec, anchor)
  b, f = x.shape[:2]
  sigma = _noise_level(k_sigma, b, f, float(s.shift), float(s.dmd_sigma_min),
                       float(s.dmd_sigma_max))
  noise = jax.random.normal(k_noise, x.shape, jnp.float32)
  x_t = jax.lax.stop_gradient(fm.add_noise(x, noise, sigma)).astype(source.dtype)

  def x0_of(params, scale):
    model = nnx.merge(graphdef, params)
    v = ode_init.guided_velocity(model, source, x_t, sigma, camera, text, scale,
                                 batch.get("text_uncond"), anchor)
    return jax.lax.stop_gradient(fm.x0_from_velocity(x_t.astype(jnp.float32), v, sigma))

  x0_real = x0_of(teacher_params, float(s.real_cfg))
  x0_fake = x0_of(critic_params, 1.0)
  loss, metrics = dmd_pseudo_loss(x, x0_real, x0_fake)
  return loss, dict(metrics, exit_level=one.exit_level)


def make_updates(graphdef, config, gen_opt: optax.GradientTransformation,
                 critic_opt: optax.GradientTransformation):
  """(critic_update, generator_update), each `(state, teacher_params, batch, key) ->
  (state, metrics)`; neither changes the step. The critic update changes only the
  critic and its optimizer; the generator update only the generator, its optimizer and
  the EMA."""
  s = config.student
  sigmas = student_inf.student_sigmas(config)
  spec = rollout.RolloutSpec.from_config(config)

  def critic_update(state: DMDState, teacher_params, batch, key):
    del teacher_params
    k_roll, k_loss = jax.random.split(key)
    source, camera, text, anchor = rollout.conditions(config, batch)
    one = rollout.rollout_no_grad(graphdef, state.gen_params, source, camera, text, k_roll,
                                  sigmas, spec, anchor)
    x = rollout.no_grad_samples(one)
    (_, metrics), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(
        state.critic_params, graphdef, config, batch, x, k_loss)
    updates, opt = critic_opt.update(grads, state.critic_opt, state.critic_params)
    params = optax.apply_updates(state.critic_params, updates)
    metrics = dict(metrics, critic_grad_norm=optax.tree.norm(grads))
    return state.replace(critic_params=params, critic_opt=opt), metrics

  def generator_update(state: DMDState, teacher_params, batch, key):
    (_, metrics), grads = jax.value_and_grad(generator_loss_fn, has_aux=True)(
        state.gen_params, graphdef, state.critic_params, teacher_params, config, batch, key)
    updates, opt = gen_opt.update(grads, state.gen_opt, state.gen_params)
    params = optax.apply_updates(state.gen_params, updates)
    ema = ema_update(state.ema_params, params, state.step, float(s.ema_decay), int(s.ema_start))
    metrics = dict(metrics, gen_grad_norm=optax.tree.norm(grads))
    return state.replace(gen_params=params, gen_opt=opt, ema_params=ema), metrics

  return critic_update, generator_update


def make_iterations(graphdef, config, gen_opt, critic_opt):
  """(critic_iteration, generator_iteration), each `(state, teacher_params, batch) ->
  (state, metrics)` with keys derived from `state.step`. The critic iteration ends the
  training iteration (step + 1); the generator iteration runs before it on generator steps.
  """
  root = jax.random.key(config.seed)
  critic_update, generator_update = make_updates(graphdef, config, gen_opt, critic_opt)

  def critic_iteration(state: DMDState, teacher_params, batch: dict):
    key = jax.random.fold_in(jax.random.fold_in(root, state.step), 0)
    state, metrics = critic_update(state, teacher_params, batch, key)
    return state.replace(step=state.step + 1), dict(metrics, loss=metrics["critic_loss"])

  def generator_iteration(state: DMDState, teacher_params, batch: dict):
    key = jax.random.fold_in(jax.random.fold_in(root, state.step), 1)
    return generator_update(state, teacher_params, batch, key)

  return critic_iteration, generator_iteration


def compile_iterations(graphdef, config, aux, state_shardings, mesh, batch_example: dict):
  """The two iterations jitted with shardings and state donation, teacher bound:
  (critic_fn, gen_fn), each `(state, batch) -> (state, metrics)`."""
  batch_sh = jax.tree.map(lambda x: sharding.batch_sharding(mesh, x.ndim), batch_example)
  teacher_params = aux["teacher_params"]

  def jitted(fn):
    f = jax.jit(fn, in_shardings=(state_shardings, aux["param_shardings"], batch_sh),
                out_shardings=(state_shardings, sharding.replicated(mesh)), donate_argnums=(0,))
    return BoundStep(f, teacher_params)

  critic_it, gen_it = make_iterations(graphdef, config, aux["gen_opt"], aux["critic_opt"])
  return jitted(critic_it), jitted(gen_it)


def compile_step(graphdef, config, aux, state_shardings, mesh, batch_example: dict):
  """step_fn(state, batch): the generator iteration on generator steps, then the critic's."""
  critic_fn, gen_fn = compile_iterations(graphdef, config, aux, state_shardings, mesh,
                                         batch_example)
  gen_every = int(config.student.gen_every)

  def step_fn(state, batch):
    metrics = {}
    if is_generator_step(jax.device_get(state.step), gen_every):
      state, metrics = gen_fn(state, batch)
    state, m = critic_fn(state, batch)
    metrics = dict(metrics, **m)
    if "dmd_loss" in metrics:         # a non-finite generator loss also stops the run
      metrics["loss"] = metrics["loss"] + 0.0 * metrics["dmd_loss"]
    return state, metrics

  def precompile(state, batch):
    critic_fn.precompile(state, batch)
    gen_fn.precompile(state, batch)

  step_fn.precompile = precompile
  return step_fn


def init(config, mesh):
  """(graphdef, state, state_shardings, aux) for `train.loop`.

  Generator: `student.init_from` (an ODE-init workdir or any params checkpoint) or, when
  empty, the teacher (a warning: DMD cannot repair a bad init). Critic: the teacher.
  """
  if int(config.student.gen_every) < 1:
    raise ValueError(f"student.gen_every={config.student.gen_every} must be >= 1")
  gen_opt, critic_opt = make_optimizer(config.gen_optim), make_optimizer(config.critic_optim)
  graphdef, abs_params, param_sh = ode_init.abstract_params(config, mesh)
  teacher_params = ode_init.load_teacher_params(config, abs_params, param_sh)
  if config.student.init_from:
    gen_params = ode_init.load_params(config.student.init_from, abs_params, param_sh,
                                      keys=("params", "ema_params", "gen_params"))
  else:
    logging.warning("DMD: student.init_from is empty; the generator starts from the teacher "
                    "(run the ode_init stage first for a usable few-step init)")
    gen_params = teacher_params

  def make(gen, teacher):
    gen, critic = jax.tree.map(jnp.copy, gen), jax.tree.map(jnp.copy, teacher)
    return DMDState(step=jnp.zeros((), jnp.int32), gen_params=gen, critic_params=critic,
                    gen_opt=gen_opt.init(gen), critic_opt=critic_opt.init(critic),
                    ema_params=st.ema_init(gen))

  abs_state = jax.eval_shape(make, gen_params, teacher_params)
  rep = sharding.replicated(mesh)
  state_sh = DMDState(
      step=rep, gen_params=param_sh, critic_params=param_sh,
      gen_opt=st.opt_state_shardings(abs_state.gen_opt, abs_params, param_sh, mesh),
      critic_opt=st.opt_state_shardings(abs_state.critic_opt, abs_params, param_sh, mesh),
      ema_params=param_sh)
  state = jax.jit(make, out_shardings=state_sh)(gen_params, teacher_params)
  aux = dict(gen_opt=gen_opt, critic_opt=critic_opt, teacher_params=teacher_params,
             param_shardings=param_sh)
  return graphdef, state, state_sh, aux


def prepare_config(config, workdir: str):
  """In a multi-stage run, start the generator from `workdir/ode_init` when it exists."""
  ode_dir = os.path.join(workdir, "ode_init")
  if not config.student.init_from and os.path.isdir(os.path.join(ode_dir, "ckpt")):
    config.student.init_from = ode_dir
  return config

"""Teacher (bidirectional, cross-frame in-context) training: one pure jitted step.

Batch (latents; see `realcam_jax.data`):
  source_latents  f[B, F, h, w, C]   clean source latents
  target_latents  f[B, F, h, w, C]   clean target latents
  target_poses    f[B, F, 4, 4]      target c2w per latent frame, relative to the reference
  intrinsics      f[B, 3, 3]         pixel intrinsics (for Plücker features)
  text            f[B, Lt, Dt]       optional; the null embedding when absent

Objective (design.md §3): one noise level per sample (shifted uniform) on all target
frames, velocity target `noise - x0`, `(1 - a) L_FM + a L_motion` on target frames only;
with probability `objective.cond_dropout` a sample drops camera and text (CFG).
`objective.loss_weighting`: "velocity" (default) weighs every sigma alike in velocity
units; "x0" multiplies the velocity error by sigma (the squared error of the implied
x0, since v - v* = (x0* - x0) / sigma), so low-noise samples, whose velocity error a
source-anchored head divides by a small sigma, no longer dominate.

Initialisation: `train.init_from` = "" starts from `config.seed`; a directory written by
`realcam convert --model dit` (the Wan2.1 DiT, converted with the same model config)
starts the backbone from it (`load_wan_backbone`; the EMA, if any, starts there too):
every Wan parameter comes from the file, shape-checked; the RealCam-only parameters (per-block camera `cond_proj`,
`stream_embed`, `source_skip`) keep their zero seed init, so step 0 computes the Wan2.1
function on the pair sequence. Only a run starting at step 0 reads it: a run that
resumes restores its own checkpoint (`train.loop`).

EMA weights (`train.ema_decay` > 0): the state also keeps an f32 exponential moving
average of params (`common.with_ema`; a copy of params for the first `train.ema_start`
steps). Inference (`inference.load.load_teacher`), the student's frozen teacher and
export read `ema_params` when a checkpoint has them, else `params`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from realcam_jax.ckpt import pretrained
from realcam_jax.diffusion import flow_matching as fm
from realcam_jax.diffusion import schedule
from realcam_jax.models import layout
from realcam_jax.models.camera_features import batch_camera_features
from realcam_jax.models.dit import WanDiT
from realcam_jax.models.realcam import RealCamDiT, backbone_config
from realcam_jax.models.warp_anchor import batch_anchor
from realcam_jax.scale import multihost
from realcam_jax.train import state as st
from realcam_jax.train.common import (ema_enabled, gradient_step, jit_train_step, make_optimizer,
                                     with_ema)


def build_model(config) -> Callable[[nnx.Rngs], RealCamDiT]:
  return lambda rngs: RealCamDiT(config.model, rngs=rngs)


def model_forward(model: RealCamDiT, config, batch: dict, noisy_target, sigma, cond_mask=None):
  """Velocity for the combined sequence [B, 2F, h, w, C] (see RealCamDiT.__call__)."""
  src = batch["source_latents"]
  sf = config.model.get("vae_spatial_factor", 8)
  cam = batch_camera_features(config.model, batch, src.shape[2:4], sf)
  anchor = batch_anchor(config.model, batch, sf)
  return model(src, noisy_target, sigma, cam, batch.get("text"), cond_mask=cond_mask,
               uncond_text=batch.get("text_uncond"), anchor=anchor)


def loss_fn(params, graphdef, config, batch: dict, key: jax.Array):
  """Flow-matching + motion loss on target frames. Returns (loss, metrics)."""
  model = st.merge(graphdef, params)
  x0 = batch["target_latents"]
  b, f = x0.shape[:2]
  k_sigma, k_noise, k_drop = jax.random.split(key, 3)
  obj = config.objective
  sigma = schedule.sample_training_sigmas(k_sigma, (b,), obj.shift, obj.sigma_min, obj.sigma_max)
  sigma = jnp.broadcast_to(sigma[:, None], (b, f))
  noise = jax.random.normal(k_noise, x0.shape, jnp.float32).astype(x0.dtype)
  x_t = fm.add_noise(x0, noise, sigma)
  cond_mask = (jax.random.uniform(k_drop, (b,)) >= obj.cond_dropout).astype(jnp.float32)
  v_pred = model_forward(model, config, batch, x_t, sigma, cond_mask)
  # Targets for the combined sequence; source entries are ignored by the frame weight.
  v_target = layout.combine(jnp.zeros_like(x0), fm.velocity_target(x0, noise), config.model.layout)
  scale = loss_scale(obj, sigma, config.model.layout)
  if scale is not None:
    v_pred, v_target = v_pred * scale, v_target * scale
  weight = jnp.broadcast_to(jnp.asarray(layout.is_target(f, config.model.layout), jnp.float32),
                            (b, 2 * f))
  return fm.flow_matching_loss(v_pred, v_target, weight, obj.motion_weight)


LOSS_WEIGHTINGS = ("velocity", "x0")


def loss_scale(objective, sigma, layout_name: str):
  """Per-frame factor f32[B, 2F, 1, 1, 1] on the velocity error (`objective.loss_weighting`;
  None = 1 for "velocity")."""
  w = objective.get("loss_weighting", "velocity")
  if w not in LOSS_WEIGHTINGS:
    raise ValueError(f"unknown objective.loss_weighting {w!r}; expected one of "
                     f"{LOSS_WEIGHTINGS}")
  if w == "velocity":
    return None
  s = layout.combine(jnp.zeros_like(sigma), sigma, layout_name).astype(jnp.float32)
  return s[:, :, None, None, None]


def make_train_step(graphdef, config, optimizer: optax.GradientTransformation):
  """step(state, batch) -> (state, metrics); pure, jit it with shardings and donation."""
  root = jax.random.key(config.seed)

  def step(state: st.TrainState, batch: dict):
    key = jax.random.fold_in(root, state.step)
    state, metrics = gradient_step(loss_fn, state, optimizer, graphdef, config, batch, key)
    return with_ema(state, config.train), metrics

  return step


def compile_step(graphdef, config, optimizer, state_shardings, mesh, batch_example: dict):
  """The jitted step (explicit shardings, donated state; see `common.jit_train_step`)."""
  return jit_train_step(make_train_step(graphdef, config, optimizer), state_shardings, mesh,
                        batch_example)


def wan_param_paths(model_cfg) -> set[tuple[str, ...]]:
  """Paths of the bare Wan2.1 DiT's parameters (what `realcam convert --model dit` writes),
  as they sit under `backbone` in RealCamDiT; the rest of the RealCam tree has no Wan
  counterpart."""
  cfg = backbone_config(model_cfg)              # a copy
  cfg.block_cond_dim = 0                       # Wan's exact tree: no camera cond_proj
  _, abstract = st.abstract_model(lambda rngs: WanDiT(cfg, rngs=rngs))
  return {tuple(str(k) for k in p) for p, _ in nnx.to_flat_state(abstract)}


def _wan_part(config) -> dict:
  """Where and what the converted Wan2.1 DiT is inside the teacher's params."""
  return dict(prefix=("backbone",), paths=wan_param_paths(config.model),
              what="the Wan2.1 DiT backbone of this model", setting="train.init_from",
              model_cfg=config.model)


def check_wan_backbone(config) -> None:
  """Raises CheckpointError unless `config.train.init_from` fits the model (shapes only,
  on the abstract model: fails before any weight is allocated)."""
  _, abstract = st.abstract_model(build_model(config), config.seed)
  pretrained.check_part(config.train.init_from, abstract, **_wan_part(config))


def load_wan_backbone(config, state: st.TrainState, state_sh: st.TrainState,
                      optimizer: optax.GradientTransformation) -> st.TrainState:
  """`state` with its backbone read from `config.train.init_from` (see module docstring).

  The Wan parameters are restored straight into their shardings (`state_sh.params`);
  the optimizer state is initialised afresh for the new params.
  """
  part = _wan_part(config)
  params = pretrained.load_part(config.train.init_from, state.params, state_sh.params, **part)
  opt_state = jax.jit(optimizer.init, out_shardings=state_sh.opt_state)(params)
  if multihost.is_main_process():
    own = sorted("/".join(str(k) for k in p) for p, _ in nnx.to_flat_state(params)
                 if p[0] != "backbone" or tuple(str(k) for k in p[1:]) not in part["paths"])
    print(f"train.init_from: {len(part['paths'])} Wan2.1 parameter arrays from "
          f"{config.train.init_from}; seed init (zero) for {', '.join(own)}", flush=True)
  ema = None if state.ema_params is None else jax.jit(
      st.ema_init, out_shardings=state_sh.ema_params)(params)
  return state.replace(params=params, opt_state=opt_state, ema_params=ema)


def init(config, mesh):
  """(graphdef, state, state_shardings, optimizer) for the teacher (see `train.loop`):
  a seed init, with the backbone from `train.init_from` when that is set."""
  optimizer = make_optimizer(config.optim)
  if config.train.get("init_from"):
    check_wan_backbone(config)
  graphdef, state, state_sh = st.create_sharded(build_model(config), optimizer, mesh, config.seed,
                                                ema=ema_enabled(config.train))
  if config.train.get("init_from"):
    state = load_wan_backbone(config, state, state_sh, optimizer)
  return graphdef, state, state_sh, optimizer

"""Per-device memory of full-size training, computed from the code (not guessed).

Three measurements, each from the real model and trainer code:

  state_bytes       parameters, optimizer state and gradients per device under the
                    sharding rules for a mesh shape: `jax.eval_shape` of the train-state
                    initialiser + the shardings `realcam_jax.sharding` gives them on an
                    abstract mesh (any device count, nothing allocated).
  compiled_step     the teacher train step (`train.teacher.make_train_step`: loss,
                    gradient, AdamW update; state donated) lowered and compiled with
                    explicit shardings on a fake CPU device mesh; XLA's
                    `memory_analysis()` gives per-device argument / output / temp bytes.
                    Temp holds activations, gradients and workspace.
  saved_residuals   what JAX's autodiff keeps from the forward for the backward pass
                    (`jax.ad_checkpoint.print_saved_residuals`), per sample and before
                    any XLA optimisation: backend-independent activation memory for a
                    remat policy.

For a fixed per-device batch and context size, temp does not depend on the fsdp size
except through the gradient shards (checked in docs/scaling.md), so the compiled
numbers measured on 8 fake devices extend to larger fsdp axes by swapping the state
and gradient shards for the eval_shape ones (`extend`).

Caveat: XLA's CPU backend upcasts bf16 matmuls to f32, adding f32 copies of some
activations; its temp is an upper bound of what TPU XLA needs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import ad_checkpoint

from realcam_jax import sharding

GB = 1e9
# HBM per chip (GB) of the TPU generations the plan targets.
HBM_GB = {"v5p": 95.0, "v6e": 32.0}


@dataclasses.dataclass(frozen=True)
class MeshShape:
  """Sizes of the mesh axes (data, fsdp, tensor, context)."""
  data: int = 1
  fsdp: int = 1
  tensor: int = 1
  context: int = 1

  @property
  def size(self) -> int:
    return self.data * self.fsdp * self.tensor * self.context

  @property
  def batch_shards(self) -> int:
    return self.data * self.fsdp

  def as_dict(self) -> dict[str, int]:
    return dataclasses.asdict(self)

  @property
  def rules(self) -> str:
    return "context" if self.context > 1 else "default"

  def label(self) -> str:
    parts = [f"{k}={v}" for k, v in self.as_dict().items() if v > 1 or k == "fsdp"]
    return ",".join(parts)


def plan_config(config, *, remat: str, attention_impl: str = "blockwise",
                dtype: str = "bfloat16", num_layers: int | None = None):
  """A copy of a teacher (or student) config set up as it would run on accelerators."""
  c = config.copy_and_resolve_references()
  models = [c.model] + ([c.teacher.model] if "teacher" in c else [])
  for m in models:
    m.remat_policy = remat
    m.attention_impl = attention_impl
    m.dtype = dtype
    if num_layers is not None:
      m.num_layers = int(num_layers)
  return c


def abstract_mesh(shape: MeshShape):
  return jax.sharding.AbstractMesh(tuple(shape.as_dict().values()), sharding.MESH_AXES)


def _bytes_per_device(tree, shardings) -> int:
  leaves = jax.tree.leaves(tree)
  shs = jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
  if len(leaves) != len(shs):
    raise ValueError(f"{len(leaves)} arrays but {len(shs)} shardings")
  return int(sum(math.prod(s.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
                 for x, s in zip(leaves, shs)))


def _abstract_train_state(config, mesh):
  """(graphdef, optimizer, abstract TrainState, its shardings) for the teacher trainer:
  the trainer's own (`state.abstract_sharded`), EMA weights included when the config
  keeps them (`train.ema_decay` > 0)."""
  from realcam_jax.train import state as st
  from realcam_jax.train import teacher
  from realcam_jax.train.common import ema_enabled, make_optimizer
  # A student config has no `optim`; its generator's AdamW has the same state shapes.
  optimizer = make_optimizer(config.optim if "optim" in config else config.gen_optim)
  ema = "optim" in config and ema_enabled(config.train)
  graphdef, _, abs_state, state_sh = st.abstract_sharded(teacher.build_model(config), optimizer,
                                                         mesh, config.seed, ema=ema)
  return graphdef, optimizer, abs_state, state_sh


def state_bytes(config, shape: MeshShape) -> dict[str, int]:
  """Per-device bytes of params, optimizer state, gradients (= params' shards) and the f32
  EMA copy (0 when the config keeps none)."""
  _, _, abs_state, state_sh = _abstract_train_state(config, abstract_mesh(shape))
  params = _bytes_per_device(abs_state.params, state_sh.params)
  opt = _bytes_per_device(abs_state.opt_state, state_sh.opt_state)
  ema = (0 if abs_state.ema_params is None else
         _bytes_per_device(abs_state.ema_params, state_sh.ema_params))
  return dict(params=params, opt_state=opt, grads=params, ema=ema,
              num_params=int(sum(x.size for x in jax.tree.leaves(abs_state.params))))


def dmd_state_bytes(config, shape: MeshShape) -> dict[str, int]:
  """Per-device bytes of DMD's state: generator (trained, + fp32 EMA), critic (trained)
  and the frozen teacher, all of the teacher's architecture and sharded alike; only one
  of the two trained models has gradients at a time (separate critic / generator
  iterations). `total` = persistent state + one set of gradients."""
  one = state_bytes(config, shape)
  p, o = one["params"], one["opt_state"]
  out = dict(generator=p, generator_opt=o, generator_ema=p, critic=p, critic_opt=o, teacher=p,
             grads=p)
  out["persistent"] = 4 * p + 2 * o
  out["total"] = out["persistent"] + p
  return out


def teacher_state_total(s: dict[str, int]) -> int:
  """Params + optimizer state + gradients + EMA copy (per device) from `state_bytes`."""
  return s["params"] + s["opt_state"] + s["grads"] + s.get("ema", 0)


def batch_spec(config, global_batch: int, text: bool = True) -> dict:
  """ShapeDtypeStructs of one teacher batch (see `train.teacher`)."""
  d = config.data
  f, h, w, c = d.latent_frames, d.latent_height, d.latent_width, d.latent_channels
  spec = dict(source_latents=(global_batch, f, h, w, c), target_latents=(global_batch, f, h, w, c),
              target_poses=(global_batch, f, 4, 4), intrinsics=(global_batch, 3, 3))
  if text:
    spec["text"] = (global_batch, config.model.text_len, config.model.text_dim)
  return {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in spec.items()}


def tokens_per_sample(config) -> int:
  d, m = config.data, config.model
  pt, ph, pw = m.patch_size
  return 2 * d.latent_frames // pt * (d.latent_height // ph) * (d.latent_width // pw)


def compiled_step(config, shape: MeshShape, devices=None, samples_per_shard: int = 1
                  ) -> dict[str, Any]:
  """Compiles the teacher train step on `shape.size` (fake) devices; per-device bytes.

  Returns argument, output, alias, temp and total (= argument + output - alias + temp)
  bytes, and the compile time.
  """
  import time

  from realcam_jax.ckpt.manager import abstract_like
  from realcam_jax.train import teacher
  devices = list(jax.devices() if devices is None else devices)
  if len(devices) < shape.size:
    raise ValueError(f"mesh {shape.label()} needs {shape.size} devices, have {len(devices)}; "
                     f"set XLA_FLAGS=--xla_force_host_platform_device_count={shape.size}")
  mesh = sharding.make_mesh(shape.as_dict(), devices[:shape.size])
  rules = sharding.rules_for(shape.rules)
  # Abstract state built outside the mesh context (flax would map logical names itself).
  graphdef, optimizer, abs_state, state_sh = _abstract_train_state(config, mesh)
  abs_state = abstract_like(abs_state, state_sh)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype,
                                   sharding=sharding.batch_sharding(mesh, len(v.shape), rules))
           for k, v in batch_spec(config, shape.batch_shards * samples_per_shard).items()}
  batch_sh = {k: v.sharding for k, v in batch.items()}
  t0 = time.time()
  with jax.set_mesh(mesh), sharding.use_rules(rules):
    step = jax.jit(teacher.make_train_step(graphdef, config, optimizer),
                   in_shardings=(state_sh, batch_sh),
                   out_shardings=(state_sh, sharding.replicated(mesh)), donate_argnums=(0,))
    compiled = step.lower(abs_state, batch).compile()
  return _memory(compiled, t0)


def _memory(compiled, t0) -> dict[str, Any]:
  import time
  ma = compiled.memory_analysis()
  out = dict(argument=int(ma.argument_size_in_bytes), output=int(ma.output_size_in_bytes),
             alias=int(ma.alias_size_in_bytes), temp=int(ma.temp_size_in_bytes),
             compile_s=time.time() - t0)
  out["total"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
  return out


def compiled_dmd(config, shape: MeshShape, devices=None, samples_per_shard: int = 1
                 ) -> dict[str, dict[str, Any]]:
  """Compiles the two DMD iterations (`train.dmd.make_iterations`) of a student config on
  `shape.size` (fake) devices: {"critic": bytes..., "generator": bytes...} per device.

  Arguments: the DMD state (generator, critic, their AdamW states, fp32 EMA; donated),
  the frozen teacher's params and the batch.
  """
  import time

  from realcam_jax.ckpt.manager import abstract_like
  from realcam_jax.train import dmd, ode_init
  from realcam_jax.train import state as st
  from realcam_jax.train.common import make_optimizer
  devices = list(jax.devices() if devices is None else devices)
  if len(devices) < shape.size:
    raise ValueError(f"mesh {shape.label()} needs {shape.size} devices, have {len(devices)}")
  mesh = sharding.make_mesh(shape.as_dict(), devices[:shape.size])
  rules = sharding.rules_for(shape.rules)
  gen_opt, critic_opt = make_optimizer(config.gen_optim), make_optimizer(config.critic_optim)
  graphdef, abs_params, param_sh = ode_init.abstract_params(config, mesh)

  def make(gen, teacher):   # as in `dmd.init`
    return dmd.DMDState(step=jnp.zeros((), jnp.int32), gen_params=gen, critic_params=teacher,
                        gen_opt=gen_opt.init(gen), critic_opt=critic_opt.init(teacher),
                        ema_params=jax.tree.map(lambda p: p.astype(jnp.float32), gen))

  abs_state = jax.eval_shape(make, abs_params, abs_params)
  rep = sharding.replicated(mesh)
  state_sh = dmd.DMDState(
      step=rep, gen_params=param_sh, critic_params=param_sh,
      gen_opt=st.opt_state_shardings(abs_state.gen_opt, abs_params, param_sh, mesh),
      critic_opt=st.opt_state_shardings(abs_state.critic_opt, abs_params, param_sh, mesh),
      ema_params=param_sh)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype,
                                   sharding=sharding.batch_sharding(mesh, len(v.shape), rules))
           for k, v in batch_spec(config, shape.batch_shards * samples_per_shard).items()}
  batch_sh = {k: v.sharding for k, v in batch.items()}
  args = (abstract_like(abs_state, state_sh), abstract_like(abs_params, param_sh), batch)
  critic_it, gen_it = dmd.make_iterations(graphdef, config, gen_opt, critic_opt)
  out = {}
  with jax.set_mesh(mesh), sharding.use_rules(rules):
    for name, fn in (("critic", critic_it), ("generator", gen_it)):
      t0 = time.time()
      step = jax.jit(fn, in_shardings=(state_sh, param_sh, batch_sh),
                     out_shardings=(state_sh, rep), donate_argnums=(0,))
      out[name] = _memory(step.lower(*args).compile(), t0)
  return out


_AVAL = re.compile(r"^(\w+)\[([\d,]*)\]")
_DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "i32": 4, "u32": 4, "s32": 4, "bool": 1,
                "pred": 1, "i8": 1, "u8": 1, "f64": 8, "i64": 8}


def saved_residuals(config, samples: int = 1) -> dict[str, Any]:
  """Bytes autodiff saves between forward and backward of the teacher loss for `samples`
  samples (no mesh), excluding the inputs (params, batch) themselves.

  Returns total bytes and the largest residuals [(bytes, description)].
  """
  from realcam_jax.train import teacher
  graphdef, _, abs_state, _ = _abstract_train_state(config, abstract_mesh(MeshShape()))
  batch = batch_spec(config, samples)
  key = jax.random.key(0)

  def loss(params, batch):
    return teacher.loss_fn(params, graphdef, config, batch, key)[0]

  buf = io.StringIO()
  with contextlib.redirect_stdout(buf):
    ad_checkpoint.print_saved_residuals(loss, abs_state.params, batch)
  items = []
  for line in buf.getvalue().splitlines():
    m = _AVAL.match(line.strip())
    if not m or "from the argument" in line:
      continue
    dims = [int(x) for x in m.group(2).split(",") if x]
    items.append((math.prod(dims) * _DTYPE_BYTES.get(m.group(1), 4), line.strip()))
  items.sort(reverse=True)
  return dict(total=int(sum(b for b, _ in items)), largest=items[:6], count=len(items))


def extend(measured_total: int, measured_state: int, target_state: int) -> int:
  """Total per-device bytes at a target mesh from a compile at a smaller fsdp size: the
  state and gradient shards (`*_state`, e.g. `teacher_state_total`) change, activations
  and workspace do not."""
  return measured_total - measured_state + target_state


def fits(total_bytes: int, chip: str, headroom: float = 0.9) -> bool:
  """Whether `total_bytes` fits in `headroom` of a chip's HBM."""
  return total_bytes <= headroom * HBM_GB[chip] * GB

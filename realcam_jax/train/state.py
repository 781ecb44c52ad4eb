"""Train state as a plain pytree and helpers to build/shard it from an NNX model."""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from realcam_jax import sharding


@flax.struct.dataclass
class TrainState:
  step: jax.Array        # i32[]
  params: Any            # nnx.State of the trained model's Params
  opt_state: Any         # optax state
  ema_params: Any = None  # nnx.State, f32: EMA of params (`common.ema_update`); None = off


def split_model(model: nnx.Module):
  """(graphdef, params) with params an nnx.State of Params (the only variables we use)."""
  graphdef, params = nnx.split(model, nnx.Param)
  return graphdef, params


def merge(graphdef, params) -> nnx.Module:
  return nnx.merge(graphdef, params)


def abstract_model(build: Callable[[nnx.Rngs], nnx.Module], seed: int = 0):
  """(graphdef, abstract params) without allocating weights."""
  model = nnx.eval_shape(lambda: build(nnx.Rngs(seed)))
  return split_model(model)


def ema_init(params):
  """The EMA's start: an f32 copy of params."""
  return jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)


def abstract_sharded(build: Callable[[nnx.Rngs], nnx.Module],
                     optimizer: optax.GradientTransformation, mesh, seed: int,
                     rules=sharding.RULES, *, ema: bool = False):
  """The TrainState `create_sharded` would make, without computing it: (graphdef, init,
  abstract state, state shardings); `init()` builds the state (jit it with the shardings).
  `realcam_jax.scale.memory_plan` counts its bytes from the same abstract state."""
  graphdef, abs_params = abstract_model(build, seed)
  param_sh = sharding.state_shardings(abs_params, mesh, rules)

  def init():
    _, params = split_model(build(nnx.Rngs(seed)))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optimizer.init(params),
                      ema_params=ema_init(params) if ema else None)

  abs_state = jax.eval_shape(init)
  return graphdef, init, abs_state, _state_shardings(abs_state, param_sh, mesh)


def create_sharded(build: Callable[[nnx.Rngs], nnx.Module], optimizer: optax.GradientTransformation,
                   mesh, seed: int, rules=sharding.RULES, *, ema: bool = False):
  """Initialises a TrainState directly into its shardings (no host copy of full weights).

  `ema`: the state also holds `ema_params` (an f32 copy of params, sharded like them).
  Returns (graphdef, state, state_shardings).
  """
  graphdef, init, _, state_sh = abstract_sharded(build, optimizer, mesh, seed, rules, ema=ema)
  state = jax.jit(init, out_shardings=state_sh)()
  return graphdef, state, state_sh


def _state_shardings(abs_state: TrainState, param_sh, mesh):
  rep = sharding.replicated(mesh)
  return TrainState(step=rep, params=param_sh,
                    opt_state=opt_state_shardings(abs_state.opt_state, abs_state.params,
                                                  param_sh, mesh),
                    ema_params=None if abs_state.ema_params is None else param_sh)


def opt_state_shardings(abs_opt_state, abs_params, param_sh, mesh):
  """Optimizer moments follow their parameters' shardings; everything else is replicated."""
  params_def = jax.tree.structure(abs_params)
  rep = sharding.replicated(mesh)

  def rec(node):
    if jax.tree.structure(node) == params_def:
      return param_sh
    if isinstance(node, tuple) and hasattr(node, "_fields"):    # NamedTuple optax states
      return type(node)(*[rec(c) for c in node])
    if isinstance(node, (tuple, list)):
      return type(node)(rec(c) for c in node)
    if isinstance(node, dict):
      return {k: rec(v) for k, v in node.items()}
    return jax.tree.map(lambda _: rep, node)

  return rec(abs_opt_state)


def count_params(params) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))

"""`train.common.precompile` / `BoundStep`: compiled ahead, the first call reuses it."""

import logging

import jax
import jax.numpy as jnp
import numpy as np

from realcam_jax.scale import multihost
from realcam_jax.train import common


class _Compiles(logging.Handler):
  def __init__(self):
    super().__init__()
    self.names = []

  def emit(self, record):
    msg = record.getMessage()
    if msg.startswith("Compiling "):
      self.names.append(msg)


def _count_compiles(fn):
  handler = _Compiles()
  logger = logging.getLogger("jax")
  logger.addHandler(handler)
  try:
    with jax.log_compiles(True):
      out = fn()
  finally:
    logger.removeHandler(handler)
  return out, handler.names


def test_bound_step_precompiles_and_the_call_reuses_it():
  jitted = jax.jit(lambda state, scale, batch: (state + scale * batch["x"],
                                                {"loss": jnp.sum(batch["x"])}))
  step = common.BoundStep(jitted, jnp.float32(2.0))
  state, batch = jnp.ones(3), {"x": jnp.arange(3.0)}
  assert common.precompile(step, state, batch)
  (new, metrics), compiled = _count_compiles(lambda: jax.block_until_ready(step(state, batch)))
  assert compiled == []
  np.testing.assert_allclose(new, [1.0, 3.0, 5.0])
  assert float(metrics["loss"]) == 3.0
  # A new shape is a new program: the counter sees it (so the check above can fail).
  state4, batch4 = jnp.ones(4), {"x": jnp.ones(4)}
  _, compiled = _count_compiles(lambda: jax.block_until_ready(step(state4, batch4)))
  assert len(compiled) == 1


def test_precompile_plain_jit_and_unknown_functions():
  f = jax.jit(lambda s, b: s * b)
  a, b = jnp.ones(2), jnp.ones(2)
  assert common.precompile(f, a, b)
  _, compiled = _count_compiles(lambda: jax.block_until_ready(f(a, b)))
  assert compiled == []
  assert not common.precompile(lambda s, b: (s, {}), 1, 2)


def test_barrier_is_a_no_op_for_one_process():
  assert jax.process_count() == 1
  multihost.barrier("anything", timeout_s=0.001)   # returns at once


def test_gradient_step_is_one_adam_step_on_the_loss_gradient():
  import optax
  from realcam_jax.train import state as st
  params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
  x = jnp.array([3.0, 4.0])

  def loss_fn(p, x, scale):
    loss = scale * (jnp.dot(p["w"], x) + p["b"]) ** 2
    return loss, {"loss": loss}

  opt = optax.adam(0.1)
  state = st.TrainState(step=jnp.int32(7), params=params, opt_state=opt.init(params))
  new, metrics = common.gradient_step(loss_fn, state, opt, x, 2.0)
  # By hand: d/dw = 2 * scale * r * x, d/db = 2 * scale * r with r = w.x + b = -4.5;
  # Adam's first step moves every parameter by -lr * sign(gradient).
  r = 1.0 * 3.0 - 2.0 * 4.0 + 0.5
  g_w, g_b = 4.0 * r * np.array([3.0, 4.0]), 4.0 * r
  np.testing.assert_allclose(new.params["w"], [1.1, -1.9], rtol=1e-5)
  np.testing.assert_allclose(new.params["b"], 0.6, rtol=1e-5)
  assert int(new.step) == 8 and isinstance(new, st.TrainState)
  np.testing.assert_allclose(metrics["loss"], 2.0 * r * r, rtol=1e-6)
  np.testing.assert_allclose(metrics["grad_norm"], np.sqrt(np.sum(g_w ** 2) + g_b ** 2),
                             rtol=1e-6)

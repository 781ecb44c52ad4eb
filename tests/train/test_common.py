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

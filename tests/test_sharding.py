"""Sharded DiT on 8 fake CPU devices (data 2, fsdp 2, tensor 2) == unsharded."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding

from realcam_jax import sharding
from realcam_jax.config import get_config
from realcam_jax.models.dit import WanDiT

P = jax.P


@pytest.fixture(scope="module")
def setup():
  if len(jax.devices()) < 8:
    pytest.skip("needs 8 (fake) devices: XLA_FLAGS=--xla_force_host_platform_device_count=8")
  mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2, context=1), jax.devices()[:8])
  cfg = get_config("dit:tiny").model
  abstract = nnx.eval_shape(lambda: WanDiT(cfg, rngs=nnx.Rngs(0)))
  graphdef, abstract_state = nnx.split(abstract)
  shardings = sharding.state_shardings(abstract_state, mesh)
  with jax.set_mesh(mesh):
    state = jax.jit(lambda: nnx.state(WanDiT(cfg, rngs=nnx.Rngs(0))), out_shardings=shardings)()
  return mesh, cfg, graphdef, shardings, state


def _value(state, path):
  node = state
  for k in path.split("/"):
    node = node[k]
  return node.get_value()


@pytest.mark.parametrize("path,spec", [
    ("blocks/attn1/to_q/kernel", P(None, "fsdp", "tensor")),
    ("blocks/attn2/to_out/kernel", P(None, "tensor", "fsdp")),
    ("blocks/attn1/norm_q/scale", P(None, "tensor")),
    ("blocks/ffn/fc1/kernel", P(None, "fsdp", "tensor")),
    ("blocks/ffn/fc2/bias", P(None, "fsdp")),
    ("blocks/scale_shift_table", P(None, None, None, "fsdp")),
    ("patch_embedding/kernel", P(None, None, None, None, "fsdp")),
    ("condition_embedder/time_proj/kernel", P("fsdp", None)),
    ("condition_embedder/text_embedder/linear_1/kernel", P(None, "fsdp")),
    ("proj_out/kernel", P("fsdp", None)),
])
def test_params_land_with_expected_specs(setup, path, spec):
  mesh, _, _, _, state = setup
  value = _value(state, path)
  assert isinstance(value.sharding, NamedSharding) and value.sharding.mesh == mesh
  assert value.sharding.spec == spec


def test_logical_axes_are_recorded_on_params(setup):
  _, _, _, _, state = setup
  axes = sharding.state_logical_axes(state)
  assert axes["blocks"]["attn1"]["to_q"]["kernel"] == ("layers", "embed", "heads")
  assert axes["condition_embedder"]["time_proj"]["kernel"] == ("embed", "modulation")


def test_sharded_forward_equals_unsharded(setup):
  mesh, cfg, graphdef, shardings, state = setup
  r = np.random.default_rng(0)
  # Random values everywhere (the output head is zero at init), placed with the same shardings.
  host = jax.tree.map(lambda a: (0.2 * r.standard_normal(a.shape)).astype(np.float32), state)
  sharded_state = jax.device_put(host, shardings)
  b, f = 4, 2
  x = r.standard_normal((b, f, 4, 6, cfg.in_channels)).astype(np.float32)
  t = r.uniform(0, 1000, (b, f)).astype(np.float32)
  ctx = r.standard_normal((b, 3, cfg.text_dim)).astype(np.float32)

  def forward(st, x, t, ctx):
    return nnx.merge(graphdef, st)(x, t, ctx)

  want = jax.jit(forward)(host, x, t, ctx)
  batch = [sharding.batch_sharding(mesh, n) for n in (5, 2, 3)]
  with jax.set_mesh(mesh):
    got = jax.jit(forward, in_shardings=(shardings, *batch), out_shardings=batch[0])(
        sharded_state, x, t, ctx)
  assert got.sharding.spec[0] == ("data", "fsdp")
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)

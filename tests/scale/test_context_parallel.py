"""Context (sequence) parallelism: the `context` rule table on a data 2 x context 4 mesh.

The tiny RealCamDiT's forward and parameter gradient (dense and blockwise attention)
under `jax.set_mesh` with `sharding.use_rules("context")` equal the unsharded ones, the
token activations are sharded over `context` along the token axis, and attention is
partitioned: each device computes scores for its own queries against all keys.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from realcam_jax import sharding
from realcam_jax.config import get_config
from realcam_jax.models import dit
from realcam_jax.models.realcam import RealCamDiT

P = jax.P
B, F, H, W = 2, 3, 4, 4     # 2F = 6 frames x (4/2 * 4/2) = 24 tokens, 6 per context shard


@pytest.fixture(scope="module")
def setup():
  if len(jax.devices()) < 8:
    pytest.skip("needs 8 (fake) devices: XLA_FLAGS=--xla_force_host_platform_device_count=8")
  mesh = sharding.make_mesh(dict(data=2, fsdp=1, tensor=1, context=4), jax.devices()[:8])
  cfg = get_config("teacher:tiny").model
  # Built and evaluated outside the mesh (flax would map logical names itself inside).
  _, abstract = nnx.split(nnx.eval_shape(lambda: RealCamDiT(cfg, rngs=nnx.Rngs(0))))
  r = np.random.default_rng(0)
  # Random values everywhere: the output head and camera projections are zero at init.
  params = jax.tree.map(lambda a: (0.3 * r.standard_normal(a.shape)).astype(np.float32),
                        abstract)
  inputs = dict(
      source=r.standard_normal((B, F, H, W, cfg.in_channels)).astype(np.float32),
      target=r.standard_normal((B, F, H, W, cfg.in_channels)).astype(np.float32),
      sigma=r.uniform(0.1, 0.9, (B, F)).astype(np.float32),
      camera=r.standard_normal((B, F, 12)).astype(np.float32),
      text=r.standard_normal((B, cfg.text_len, cfg.text_dim)).astype(np.float32))
  return mesh, cfg, params, inputs


def _graphdef(cfg, impl):
  cfg = cfg.copy_and_resolve_references()
  cfg.attention_impl = impl
  return nnx.split(nnx.eval_shape(lambda: RealCamDiT(cfg, rngs=nnx.Rngs(0))))[0]


def _loss_and_grad(graphdef):
  def loss(params, inputs):
    out = nnx.merge(graphdef, params)(**inputs)
    return jnp.mean(jnp.square(out)), out
  return jax.value_and_grad(loss, has_aux=True)


@pytest.mark.parametrize("impl", ["dot_product", "blockwise"])
def test_context_sharded_forward_and_grad_equal_unsharded(setup, monkeypatch, impl):
  mesh, cfg, params, inputs = setup
  graphdef = _graphdef(cfg, impl)
  (want_loss, want_out), want_grad = jax.jit(_loss_and_grad(graphdef))(params, inputs)

  seen = []
  original = dit._constrain_tokens

  def recording(x):
    y = original(x)
    jax.debug.inspect_array_sharding(y.reshape(y.shape[0], -1, y.shape[-1]),
                                     callback=lambda s: seen.append(s))
    return y

  monkeypatch.setattr(dit, "_constrain_tokens", recording)
  param_sh = sharding.state_shardings(params, mesh)
  input_sh = {k: sharding.batch_sharding(mesh, v.ndim) for k, v in inputs.items()}
  with jax.set_mesh(mesh), sharding.use_rules("context"):
    step = jax.jit(_loss_and_grad(graphdef), in_shardings=(param_sh, input_sh))
    lowered = step.lower(params, inputs)
    compiled = lowered.compile()
    (got_loss, got_out), got_grad = compiled(jax.device_put(params, param_sh),
                                             jax.device_put(inputs, input_sh))

  np.testing.assert_allclose(np.asarray(got_out), np.asarray(want_out), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(float(got_loss), float(want_loss), rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                       rtol=1e-4, atol=1e-5),
               got_grad, want_grad)

  # Token activations [B, T, D]: batch over data, tokens over context.
  assert seen, "no token activations were inspected"
  for s in seen:
    assert tuple(s.spec)[:2] == ("data", "context"), s.spec
  # Attention scores: per device 1 sample x 2 heads x 6 own queries x all 24 keys (one
  # key block of 24 for `blockwise`).
  hlo = compiled.as_text()
  t = 2 * F * (H // 2) * (W // 2)
  assert re.search(rf"f32\[1,2,{t // 4},{t}\]", hlo), "attention scores are not context-sharded"
  assert not re.search(rf"f32\[1,2,{t},{t}\]", hlo), "full attention scores on one device"


def test_context_rules_shard_only_the_token_axis():
  rules = sharding.rules_for("context")
  assert sharding.logical_to_spec(("batch", "length", "act_embed"), rules) == \
      P(("data", "fsdp"), "context", None)
  assert sharding.logical_to_spec(("batch", "length", "act_embed")) == \
      P(("data", "fsdp"), None, None)
  # Parameters are placed identically under both tables.
  for name in ("embed", "mlp", "heads", "kv", "layers"):
    assert rules[name] == sharding.RULES[name]


def test_use_rules_restores_the_previous_table():
  assert sharding.active_rules() is sharding.RULES
  with sharding.use_rules("context") as table:
    assert sharding.active_rules() is table and table["length"] == "context"
  assert sharding.active_rules() is sharding.RULES
  with pytest.raises(ValueError, match="unknown sharding rules 'seq'"):
    with sharding.use_rules("seq"):
      pass

"""The memory plan's measurements on the tiny config (the full-size run is
`launch/plan_memory.py`; its tables are in docs/scaling.md)."""

import math

import jax
import numpy as np
import pytest

from realcam_jax.config import get_config
from realcam_jax.scale import memory_plan as mp


@pytest.fixture(scope="module")
def config():
  return mp.plan_config(get_config("teacher:tiny"), remat="full", dtype="float32")


def test_state_bytes_follow_the_fsdp_sharding(config):
  one = mp.state_bytes(config, mp.MeshShape(fsdp=1))
  assert one["params"] == 4 * one["num_params"]               # f32, unsharded
  assert one["opt_state"] >= 2 * one["params"]                # AdamW mu and nu (+ counts)
  four = mp.state_bytes(config, mp.MeshShape(fsdp=4))
  # Every tiny width (32, 64, 16) divides by 4; only vectors over unsharded axes stay whole.
  assert one["params"] / 4 <= four["params"] < one["params"] / 2
  # The context axis shards no parameter.
  assert mp.state_bytes(config, mp.MeshShape(fsdp=4, context=2))["params"] == four["params"]
  dmd = mp.dmd_state_bytes(config, mp.MeshShape(fsdp=4))
  assert dmd["total"] == 5 * four["params"] + 2 * four["opt_state"]


def test_state_bytes_count_the_ema_copy_the_trainer_keeps(config):
  """The plan's state is the trainer's (`state.abstract_sharded`): with train.ema_decay > 0
  (the tiny default) an f32 copy of params, sharded like them; none at decay 0."""
  assert config.train.ema_decay > 0
  on = mp.state_bytes(config, mp.MeshShape(fsdp=4))
  assert on["ema"] == on["params"]                             # f32 params, same sharding
  assert mp.teacher_state_total(on) == 2 * on["params"] + on["opt_state"] + on["ema"]
  off_cfg = config.copy_and_resolve_references()
  off_cfg.train.ema_decay = 0.0
  off = mp.state_bytes(off_cfg, mp.MeshShape(fsdp=4))
  assert off["ema"] == 0 and off["params"] == on["params"]


def test_saved_residuals_order_the_remat_policies(config):
  full = mp.saved_residuals(config)["total"]
  none = mp.saved_residuals(mp.plan_config(config, remat="none", dtype="float32"))["total"]
  assert 0 < full < none


def test_compiled_step_reports_per_device_bytes(config):
  if len(jax.devices()) < 8:
    pytest.skip("needs 8 (fake) devices")
  shape = mp.MeshShape(fsdp=4, context=2)
  out = mp.compiled_step(config, shape)
  state = mp.state_bytes(config, shape)
  assert out["total"] == out["argument"] + out["output"] - out["alias"] + out["temp"]
  # Arguments are this device's state shards (donated, so aliased to the outputs) + batch.
  assert out["argument"] >= state["params"] + state["opt_state"] + state["ema"]
  assert out["alias"] >= state["params"] + state["opt_state"] + state["ema"]
  assert out["temp"] > 0


def test_extend_swaps_only_the_state():
  assert mp.extend(100, 30, 10) == 80
  assert mp.fits(int(0.9 * 95e9), "v5p") and not mp.fits(int(0.91 * 32e9), "v6e")


def test_mesh_shape_labels_and_rules():
  s = mp.MeshShape(fsdp=16, context=4)
  assert s.size == 64 and s.batch_shards == 16 and s.rules == "context"
  assert s.label() == "fsdp=16,context=4" and mp.MeshShape(fsdp=8).rules == "default"
  assert math.prod(mp.abstract_mesh(s).axis_sizes) == 64
  assert np.isclose(mp.HBM_GB["v6e"], 32.0)

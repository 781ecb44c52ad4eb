"""Teacher objective and trainer on the tiny config."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from realcam_jax.config import get_config
from realcam_jax.testing import perturb
from realcam_jax.models import layout
from realcam_jax.models.realcam import RealCamDiT
from realcam_jax.train import common, data, run, teacher
from realcam_jax.train import state as st


def _batch(config, seed=0):
  it = data.make_iterator(config)
  return jax.tree.map(jnp.asarray, next(it))


@pytest.fixture(scope="module")
def tiny():
  config = get_config("teacher:tiny")
  model = RealCamDiT(config.model, rngs=nnx.Rngs(0))
  graphdef, params = st.split_model(model)
  return config, graphdef, params


def test_loss_ignores_source_predictions(tiny):
  """Changing the network's outputs at source frames does not change the loss."""
  config, graphdef, params = tiny
  batch = _batch(config)
  key = jax.random.key(3)
  base = teacher.loss_fn(params, graphdef, config, batch, key)[0]
  orig_forward = teacher.model_forward

  def noisy_sources(*a, **k):
    v = orig_forward(*a, **k)
    f = v.shape[1] // 2
    src_mask = ~layout.is_target(f, config.model.layout)
    return v + 1e3 * jnp.asarray(src_mask, v.dtype)[None, :, None, None, None]

  teacher.model_forward = noisy_sources
  try:
    changed = teacher.loss_fn(params, graphdef, config, batch, key)[0]
  finally:
    teacher.model_forward = orig_forward
  np.testing.assert_allclose(changed, base, rtol=1e-6)


@pytest.mark.parametrize("encoding", ["pose12", "plucker"])
def test_camera_encoder_starts_as_noop(encoding):
  config = get_config("teacher:tiny")
  config.model.camera_encoding = encoding
  model = RealCamDiT(config.model, rngs=nnx.Rngs(0))
  graphdef, params = st.split_model(model)
  # Perturb everything except the camera projections, so the output is non-trivial.
  params = perturb(params, 0.05)
  cond_proj = params["backbone"]["blocks"]["cond_proj"]
  cond_proj["kernel"].set_value(jnp.zeros_like(cond_proj["kernel"][...]))
  cond_proj["bias"].set_value(jnp.zeros_like(cond_proj["bias"][...]))
  model = st.merge(graphdef, params)
  batch = _batch(config)
  x_t = jnp.ones_like(batch["target_latents"])
  sigma = jnp.full(x_t.shape[:2], 0.5)
  out = teacher.model_forward(model, config, batch, x_t, sigma)
  assert float(jnp.abs(out).max()) > 1e-3
  moved = dict(batch, target_poses=batch["target_poses"].at[:, :, :3, 3].add(5.0))
  out2 = teacher.model_forward(model, config, moved, x_t, sigma)
  np.testing.assert_array_equal(out, out2)
  # ... and once the projection is non-zero, the camera matters.
  cond_proj["kernel"].set_value(jnp.ones_like(cond_proj["kernel"][...]) * 0.1)
  model = st.merge(graphdef, params)
  out3 = teacher.model_forward(model, config, moved, x_t, sigma)
  assert float(jnp.abs(out3 - out2).max()) > 1e-4


def test_few_steps_reduce_loss(tiny):
  config, graphdef, params = tiny
  config = get_config("teacher:tiny")
  config.optim.lr = 3e-3
  before, after = _loss_before_after(config, graphdef, params, _batch(config))
  assert after < 0.9 * before, (before, after)


def _loss_before_after(config, graphdef, params, batch, steps=30):
  """The loss on `batch` before and after `steps` training steps on it (finite each step)."""
  optimizer = common.make_optimizer(config.optim)
  state = st.TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))
  step = jax.jit(teacher.make_train_step(graphdef, config, optimizer))
  key = jax.random.key(0)
  evaluate = jax.jit(lambda p: teacher.loss_fn(p, graphdef, config, batch, key)[0])
  before = float(evaluate(state.params))
  for _ in range(steps):
    state, metrics = step(state, batch)
    assert np.isfinite(float(metrics["loss"]))
  return before, float(evaluate(state.params))


def _params_of(workdir, config, steps):
  graphdef, state, info = run.run(config, workdir, num_steps=steps)
  return jax.device_get(state.params), info


def test_resume_equals_uninterrupted(tmp_path):
  config = get_config("teacher:tiny")
  config.train.ckpt_every = 2
  straight, _ = _params_of(str(tmp_path / "a"), config, 4)
  _params_of(str(tmp_path / "b"), config, 2)            # "killed" after step 2
  resumed, info = _params_of(str(tmp_path / "b"), config, 4)
  assert info["last_step"] == 4
  jax.tree.map(np.testing.assert_array_equal, straight, resumed)
  rows = [json.loads(l) for l in open(tmp_path / "b" / "metrics.jsonl")]
  assert [r["step"] for r in rows] == [1, 2, 3, 4]
  assert os.path.isdir(tmp_path / "b" / "tb")


def test_nonfinite_loss_stops_and_keeps_last_good(tmp_path):
  config = get_config("teacher:tiny")
  config.train.ckpt_every = 2
  run.run(config, str(tmp_path), num_steps=2)
  config.optim.lr = 1e30    # blows up at once
  with pytest.raises(common.NonFiniteLossError, match="last good checkpoint \\(step 2\\)"):
    run.run(config, str(tmp_path), num_steps=6)
  from realcam_jax.ckpt.manager import Checkpointer
  assert Checkpointer(str(tmp_path / "ckpt")).latest_step() == 2


def test_x0_loss_weighting_is_the_implied_x0_error(tiny, monkeypatch):
  """objective.loss_weighting = x0: L_FM is the mean squared error of the x0 the velocity
  implies (x0 = x_t - sigma v), written out here from the sampled sigma, noise and output."""
  _, graphdef, params = tiny
  config = get_config("teacher:tiny", ["--config.objective.loss_weighting=x0",
                                       "--config.objective.motion_weight=0"])
  params = perturb(params, 0.2)
  batch = _batch(config)
  key = jax.random.key(5)
  seen = {}
  orig = teacher.model_forward

  def spy(model, cfg, b, x_t, sigma, cond_mask=None):
    v = orig(model, cfg, b, x_t, sigma, cond_mask)
    seen.update(x_t=x_t, sigma=sigma, v=v)
    return v

  monkeypatch.setattr(teacher, "model_forward", spy)
  loss, metrics = teacher.loss_fn(params, graphdef, config, batch, key)
  x0 = batch["target_latents"].astype(jnp.float32)
  v_tgt = layout.split(seen["v"], config.model.layout)[1].astype(jnp.float32)
  sigma = seen["sigma"][:, :, None, None, None]
  x0_pred = seen["x_t"].astype(jnp.float32) - sigma * v_tgt
  np.testing.assert_allclose(metrics["loss_fm"], jnp.mean(jnp.square(x0_pred - x0)),
                             rtol=1e-5)
  plain = get_config("teacher:tiny", ["--config.objective.motion_weight=0"])
  v_loss = teacher.loss_fn(params, graphdef, plain, batch, key)[1]["loss_fm"]
  assert abs(float(v_loss) - float(metrics["loss_fm"])) > 1e-3 * float(v_loss)


def test_unknown_loss_weighting_is_refused(tiny):
  config, graphdef, params = tiny
  config = get_config("teacher:tiny", ["--config.objective.loss_weighting=snr"])
  with pytest.raises(ValueError, match="objective.loss_weighting"):
    teacher.loss_fn(params, graphdef, config, _batch(config), jax.random.key(0))


def _with_source_poses(batch):
  """The batch with a panning source camera (the random tiny source has no poses)."""
  from realcam_jax.camera.pose import make_pose, rotation_y
  b, f = batch["target_poses"].shape[:2]
  src = np.stack([[make_pose(rotation_y(np.deg2rad(2.0 * j + i)), np.zeros(3))
                   for j in range(f)] for i in range(b)]).astype(np.float32)
  return dict(batch, source_poses=jnp.asarray(src))


def test_warped_source_teacher_starts_at_its_anchor_and_learns():
  from realcam_jax.models.warp_anchor import batch_warped_source
  config = get_config("teacher:tiny,warped_source")
  config.optim.lr = 3e-3
  batch = _with_source_poses(_batch(config))
  graphdef, params = st.split_model(RealCamDiT(config.model, rngs=nnx.Rngs(0)))
  # model_forward passes the batch's anchor: a fresh model's implied x0 is the anchor.
  x0 = batch["target_latents"]
  sigma = jnp.full(x0.shape[:2], 0.5)
  x_t = x0 + 0.3
  v = layout.split(teacher.model_forward(st.merge(graphdef, params), config, batch, x_t, sigma),
                   config.model.layout)[1]
  anchor = batch_warped_source(config.model, batch, config.model.vae_spatial_factor)
  assert float(jnp.abs(anchor - batch["source_latents"]).max()) > 1e-2   # the warp moved it
  np.testing.assert_allclose(np.asarray(x_t - 0.5 * v), np.asarray(anchor), atol=1e-5)
  before, after = _loss_before_after(config, graphdef, params, batch)
  assert after < 0.9 * before, (before, after)
  with pytest.raises(ValueError, match="source_poses"):
    teacher.loss_fn(params, graphdef, config, _batch(config), jax.random.key(0))


def test_pixel_warp_teacher_anchors_on_the_batch_anchor_latents():
  """`warp_space = "pixel"`: model_forward takes the batch's anchor_latents (from a dataset
  encoded with --anchor-depth), not a warp of the source latents; without it, named."""
  config = get_config("teacher:tiny,pixel_warp")
  config.optim.lr = 3e-3
  batch = _with_source_poses(_batch(config))
  anchor = jax.random.normal(jax.random.key(7), batch["target_latents"].shape)
  batch = dict(batch, anchor_latents=anchor)
  graphdef, params = st.split_model(RealCamDiT(config.model, rngs=nnx.Rngs(0)))
  sigma = jnp.full(anchor.shape[:2], 0.5)
  x_t = batch["target_latents"] + 0.3
  v = layout.split(teacher.model_forward(st.merge(graphdef, params), config, batch, x_t, sigma),
                   config.model.layout)[1]
  np.testing.assert_allclose(np.asarray(x_t - 0.5 * v), np.asarray(anchor), atol=1e-5)
  before, after = _loss_before_after(config, graphdef, params, batch)
  assert after < 0.9 * before, (before, after)
  no_anchor = {k: v for k, v in batch.items() if k != "anchor_latents"}
  with pytest.raises(ValueError, match="anchor-depth"):
    teacher.loss_fn(params, graphdef, config, no_anchor, jax.random.key(0))

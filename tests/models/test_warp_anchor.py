"""model.prediction = "warped_source": the anchor (models/warp_anchor.py) and the head on it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from realcam_jax.camera import warp
from realcam_jax.camera.intrinsics import intrinsics_from_fov
from realcam_jax.camera.pose import make_pose, rotation_y
from realcam_jax.config import get_config
from realcam_jax.models import layout
from realcam_jax.models.realcam import RESIDUAL_SIGMA_FLOOR, RealCamDiT
from realcam_jax.models.warp_anchor import batch_warped_source, warped_source
from realcam_jax.testing import perturb

B, F, HW, SF = 2, 3, 4, 8


def _poses():
  """Source camera panning, target camera orbiting: f32[B, F, 4, 4] each."""
  src = np.stack([[make_pose(rotation_y(np.deg2rad(3.0 * j + b)), np.array([0.1 * j, 0, 0]))
                   for j in range(F)] for b in range(B)])
  tgt = np.stack([[make_pose(rotation_y(np.deg2rad(-5.0 * j)), np.array([0.0, 0.2 * j, 0.3]))
                   for j in range(F)] for b in range(B)])
  return src.astype(np.float32), tgt.astype(np.float32)


def _cfg(prediction="warped_source"):
  cfg = get_config("configs/teacher.py:tiny", []).model
  cfg.prediction = prediction
  return cfg


def _latents(cfg, seed):
  return jax.random.normal(jax.random.key(seed), (B, F, HW, HW, cfg.in_channels))


def test_anchor_is_the_per_frame_plane_warp_at_latent_resolution():
  cfg = _cfg()
  src_poses, tgt_poses = _poses()
  K = np.tile(np.asarray(intrinsics_from_fov(60.0, HW * SF, HW * SF), np.float32), (B, 1, 1))
  source = _latents(cfg, 0)
  got = np.asarray(warped_source(cfg, source, tgt_poses, K, SF, src_poses))
  k_lat = K[0].copy()
  k_lat[:2] /= SF
  for b in range(B):
    rel = np.linalg.inv(src_poses[b]) @ tgt_poses[b]          # numpy, per frame
    ref, _ = warp.plane_warp(np.asarray(source[b]), rel, k_lat, cfg.warp_depth)
    np.testing.assert_allclose(got[b], np.asarray(ref), rtol=1e-4, atol=1e-4)
  # the same cameras given as offsets from the moving source (source_poses=None)
  pair = np.linalg.inv(src_poses) @ tgt_poses
  np.testing.assert_allclose(np.asarray(warped_source(cfg, source, pair, K, SF)), got, atol=1e-4)
  # at the identity camera the anchor is the source
  same = np.asarray(warped_source(cfg, source, src_poses, K, SF, src_poses))
  np.testing.assert_allclose(same, np.asarray(source), atol=1e-4)


def test_a_fresh_model_predicts_the_anchor():
  cfg = _cfg()
  model = RealCamDiT(cfg, rngs=nnx.Rngs(0))
  src, tgt, anchor = _latents(cfg, 0), _latents(cfg, 1), _latents(cfg, 2)
  sigma = jnp.array([[0.9, 0.5, 0.02], [0.3, 1.0, 0.05]])
  cam = jax.random.normal(jax.random.key(3), (B, F, 12))
  v = np.asarray(layout.split(model(src, tgt, sigma, cam, anchor=anchor), cfg.layout)[1])
  denom = np.maximum(np.asarray(sigma), RESIDUAL_SIGMA_FLOOR)[..., None, None, None]
  np.testing.assert_allclose(v, (np.asarray(tgt) - np.asarray(anchor)) / denom, atol=1e-5)


def test_the_anchor_source_residual_and_skip_agree_at_the_identity():
  """With anchor = source, warped_source computes source_residual's function (same weights,
  random and non-zero, source skip on); another anchor changes the output."""
  cfg = _cfg()
  cfg.source_skip = True
  graphdef, params = nnx.split(RealCamDiT(cfg, rngs=nnx.Rngs(0)))
  params = perturb(params, 0.2)
  warped = nnx.merge(graphdef, params)
  res_cfg = _cfg("source_residual")
  res_cfg.source_skip = True
  residual = nnx.merge(nnx.split(RealCamDiT(res_cfg, rngs=nnx.Rngs(0)))[0], params)
  src, tgt = _latents(cfg, 0), _latents(cfg, 1)
  sigma = jnp.full((B, F), 0.4)
  cam = jax.random.normal(jax.random.key(3), (B, F, 12))
  a = np.asarray(warped(src, tgt, sigma, cam, anchor=src))
  np.testing.assert_allclose(a, np.asarray(residual(src, tgt, sigma, cam)), rtol=1e-5, atol=1e-5)
  other = np.asarray(warped(src, tgt, sigma, cam, anchor=_latents(cfg, 5)))
  assert np.abs(other - a).max() > 1e-2


def test_missing_or_misshaped_inputs_are_named():
  cfg = _cfg()
  model = RealCamDiT(cfg, rngs=nnx.Rngs(0))
  src, tgt = _latents(cfg, 0), _latents(cfg, 1)
  sigma = jnp.full((B, F), 0.4)
  with pytest.raises(ValueError, match="needs anchor"):
    model(src, tgt, sigma, None)
  with pytest.raises(ValueError, match="needs anchor"):
    model(src, tgt, sigma, None, anchor=src[:, :2])
  with pytest.raises(ValueError, match="source_poses"):
    batch_warped_source(cfg, dict(source_latents=src, target_poses=np.zeros((B, F, 4, 4)),
                                  intrinsics=np.zeros((B, 3, 3))), SF)
  with pytest.raises(ValueError, match="target poses"):
    warped_source(cfg, src, np.zeros((B, F + 1, 4, 4)), np.zeros((B, 3, 3)), SF)

"""A "warped_source" student: its anchor reaches every chunk of a stream, the Self-Forcing
rollout, the ODE-init regression and DMD's teacher and critic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from realcam_jax.camera.intrinsics import intrinsics_from_fov
from realcam_jax.camera.pose import make_pose, rotation_y
from realcam_jax.config import get_config
from realcam_jax.inference import student
from realcam_jax.models import causal, layout
from realcam_jax.models.realcam import RealCamDiT
from realcam_jax.models.warp_anchor import warped_source
from realcam_jax.testing import key_with_exit, random_dit
from realcam_jax.train import dmd, ode_init, rollout
from realcam_jax.train import state as st

HW, SF = (4, 4), 8


def _config(source_once: bool, chunk_pairs: int = 1, sink: int = 1, window: int = 2):
  config = get_config("student:tiny")
  config.model.prediction = "warped_source"
  s = config.student
  s.chunk_pairs, s.sink_chunks, s.window_chunks, s.source_once = (chunk_pairs, sink, window,
                                                                  source_once)
  return config


def _arrays(config, pairs, seed):
  r = np.random.default_rng(seed)
  lat = lambda: r.standard_normal((1, pairs) + HW + (config.model.in_channels,)).astype(  # noqa
      np.float32)
  cam = r.standard_normal((1, pairs, 12)).astype(np.float32)
  return lat(), lat(), cam          # source, anchor, camera


@pytest.mark.parametrize("source_once", [False, True])
def test_stream_with_an_anchor_equals_the_full_forward(source_once):
  """Chunk by chunk (whole chunks, or source pass + target-only steps) with each chunk's
  anchor == one block-causal forward with the clip's anchor, past the sink/window gap."""
  config = _config(source_once)
  graphdef, params = random_dit(config.model)
  model = st.merge(graphdef, params)
  n = 5
  src, anchor, cam = _arrays(config, n, 0)
  x = _arrays(config, n, 1)[0]
  sig = np.random.default_rng(2).uniform(0.1, 1.0, (1, n)).astype(np.float32)
  hist = _arrays(config, n, 3)[0]
  cache = causal.init_student_cache(config, 1, HW, num_frames=n)

  @jax.jit
  def chunk(cache, src_c, x_c, s_c, cam_c, anc_c, h_c):
    if source_once:
      kv = causal.source_pass(model, cache, src_c)
      v = causal.target_step(model, cache, kv, src_c, x_c, s_c, cam_c, anchor_c=anc_c)
      new = causal.commit(model, cache, src_c, h_c, jnp.zeros_like(s_c), cam_c, source_kv=kv,
                          anchor_c=anc_c)
    else:
      v = causal.chunk_step(model, cache, src_c, x_c, s_c, cam_c, anchor_c=anc_c)
      new = causal.commit(model, cache, src_c, h_c, jnp.zeros_like(s_c), cam_c, anchor_c=anc_c)
    return v, new

  got = []
  for c in range(n):
    sl = slice(c, c + 1)
    v, cache = chunk(cache, src[:, sl], x[:, sl], sig[:, sl], cam[:, sl], anchor[:, sl],
                     hist[:, sl])
    got.append(np.asarray(v if source_once else layout.split(v, config.model.layout)[1]))
  got = np.concatenate(got, axis=1)
  full = lambda a: causal.full_block_causal(  # noqa: E731
      model, src, x, sig, cam, None, chunk_pairs=1, sink_chunks=1, window_chunks=2,
      history_target=hist, source_once=source_once, anchor=a)
  ref = np.asarray(layout.split(full(anchor), config.model.layout)[1])
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
  # the anchor is used: another anchor gives another velocity
  other = np.asarray(layout.split(full(anchor + 1.0), config.model.layout)[1])
  assert np.abs(other - ref).max() > 1e-2
  with pytest.raises(ValueError, match="needs anchor="):
    full(None)


def test_a_fresh_warped_source_student_generates_its_anchor():
  """Zero-initialised head: every level's x0 is the anchor, in the streaming loop and in
  the Self-Forcing rollout (both levels of the student's schedule are above the floor)."""
  config = _config(source_once=False)
  graphdef, params = nnx.split(RealCamDiT(config.model, rngs=nnx.Rngs(0)))
  n = 4
  src, anchor, cam = _arrays(config, n, 4)
  sigmas = student.student_sigmas(config)
  cache = causal.init_student_cache(config, 1, HW)
  _, x0 = jax.jit(lambda p, c: student.generate_video(
      graphdef, p, c, src, cam, None, jax.random.key(0), sigmas, chunk_pairs=1,
      anchor=anchor))(params, cache)
  np.testing.assert_allclose(x0, anchor, atol=1e-5)
  spec = rollout.RolloutSpec.from_config(config)
  key = key_with_exit(2)
  x, _ = jax.jit(lambda p: rollout.rollout(graphdef, p, src, cam, None, key, sigmas, spec,
                                           anchor))(params)
  np.testing.assert_allclose(x, anchor, atol=1e-5)


def _batch(config, pairs, seed):
  """A latent batch with the poses `rollout.conditions` warps the anchor with."""
  src, _, _ = _arrays(config, pairs, seed)
  tgt = _arrays(config, pairs, seed + 1)[0]
  s_poses = np.stack([make_pose(rotation_y(np.deg2rad(2.0 * j)), np.array([0.1 * j, 0.0, 0.0]))
                      for j in range(pairs)])[None].astype(np.float32)
  t_poses = np.stack([make_pose(rotation_y(np.deg2rad(-4.0 * j)), np.array([0.0, 0.0, 0.2]))
                      for j in range(pairs)])[None].astype(np.float32)
  k = np.asarray(intrinsics_from_fov(60.0, HW[0] * SF, HW[1] * SF), np.float32)[None]
  return dict(source_latents=jnp.asarray(src), target_latents=jnp.asarray(tgt),
              source_poses=jnp.asarray(s_poses), target_poses=jnp.asarray(t_poses),
              intrinsics=jnp.asarray(k))


def test_training_losses_see_the_warped_anchor():
  """`rollout.conditions` warps the batch's source to its targets; with fresh models the
  teacher's ODE trajectory ends at that anchor and so does the fresh student (ODE-init
  loss 0), and the critic, scored on anchor samples, has the plain flow-matching loss of a
  model that predicts the anchor."""
  config = _config(source_once=True)
  config.model.vae_spatial_factor = SF
  batch = _batch(config, 4, 7)
  src, cam, text, anchor = rollout.conditions(config, batch)
  want = warped_source(config.model, batch["source_latents"], batch["target_poses"],
                       batch["intrinsics"], SF, batch["source_poses"])
  np.testing.assert_allclose(anchor, want, atol=1e-6)
  assert np.abs(np.asarray(anchor) - np.asarray(src)).max() > 1e-2    # a real warp
  graphdef, fresh = nnx.split(RealCamDiT(config.model, rngs=nnx.Rngs(0)))
  key = jax.random.key(3)
  loss = jax.jit(lambda s, t: ode_init.loss_fn(s, graphdef, t, config, batch, key)[0])
  assert float(loss(fresh, fresh)) < 1e-8
  _, perturbed = random_dit(config.model)
  assert float(loss(perturbed, fresh)) > 1e-3
  # DMD's critic on samples equal to the anchor: a fresh critic predicts them (x0 = the
  # anchor above the residual floor), a perturbed one does not.
  x = jnp.asarray(anchor)
  c_loss = jax.jit(lambda p: dmd.critic_loss_fn(p, graphdef, config, batch, x, key)[0])
  assert np.isfinite(float(c_loss(fresh)))
  assert float(c_loss(fresh)) < float(c_loss(perturbed))

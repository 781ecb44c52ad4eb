"""StreamingSession == offline render; camera changes take effect in the next chunk."""

import numpy as np
import pytest

from realcam_jax.camera import intrinsics as intr
from realcam_jax.config import get_config
from realcam_jax.inference import session as sess
from realcam_jax.inference.camera_control import CameraCommandError
from realcam_jax.models import vae as vae_lib
from realcam_jax.testing import random_dit

H = W = 16


@pytest.fixture(scope="module")
def models():
  config = get_config("student:tiny")
  # Random (non-zero) weights everywhere, including the zero-initialised camera hooks,
  # so that the camera visibly changes the output.
  graphdef, params = random_dit(config.model, scale=0.2)
  vae = vae_lib.create_vae(get_config("vae:tiny").model, seed=0)
  k = intr.intrinsics_from_fov(60.0, W, H)
  return config, graphdef, params, vae, np.asarray(k, np.float32)


def _video(t, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (t, H, W, 3), dtype=np.uint8)


def _session(models, **kw):
  config, graphdef, params, vae, k = models
  return sess.StreamingSession(config, graphdef, params, vae, height=H, width=W, intrinsics=k,
                               seed=3, **kw)


def test_session_equals_offline_and_camera_change_applies_next_chunk(models):
  config, graphdef, params, vae, k = models
  kk = config.student.chunk_pairs
  n_chunks = 2
  t = 1 + 4 * (n_chunks * kk - 1)
  video = _video(t)

  s = _session(models)
  assert s.chunk_frames() == 1 + 4 * (kk - 1)
  # Push in uneven pieces: chunks run as soon as they are complete.
  assert s.push(video[:5]) == 0
  assert s.push(video[5:]) == n_chunks
  streamed = s.pull()
  assert streamed.shape == (t, H, W, 3) and streamed.dtype == np.uint8
  assert s.pull().shape[0] == 0

  poses = np.stack([np.eye(4, dtype=np.float32)] * (n_chunks * kk))[None]
  offline = np.asarray(sess.render_offline(config, graphdef, params, vae, video[None],
                                           poses, k[None], seed=3))[0]
  np.testing.assert_allclose(streamed.astype(int), offline.astype(int), atol=1)

  # A camera command after chunk 0 changes chunk 1 only.
  s2 = _session(models)
  s2.push(video[:s2.chunk_frames()])
  first = s2.pull()
  np.testing.assert_array_equal(first, streamed[:len(first)])
  with pytest.raises(CameraCommandError):
    s2.command("fly to the moon")
  s2.command("pan 30")
  s2.push(video[len(first):])
  second = s2.pull()
  assert np.abs(second.astype(int) - streamed[len(first):].astype(int)).max() > 2
  assert len(s.latencies) == n_chunks


def test_bad_frames_are_rejected(models):
  s = _session(models)
  with pytest.raises(ValueError, match="uint8"):
    s.push(np.zeros((2, H, W, 3), np.float32))
  with pytest.raises(ValueError, match=f"uint8\\[N, {H}, {W}, 3\\]"):
    s.push(np.zeros((2, H + 1, W, 3), np.uint8))


def test_reset_gives_a_fresh_stream_without_recompiling(models):
  config, graphdef, params, vae, k = models
  kk = config.student.chunk_pairs
  t = 1 + 4 * (2 * kk - 1)
  video = _video(t, seed=1)

  fresh = _session(models)
  fresh.push(video)
  expected = fresh.pull()

  s = _session(models)
  s.command("pan 30")
  s.push(_video(t + 3, seed=2))            # a different stream, 3 frames left pending
  assert s.chunks_done == 2 and s._pending
  compiled = s._step._cache_size()
  s.reset()                                # unpulled output and pending frames dropped
  assert (s.chunks_done, s.frames_done, s.latencies) == (0, 0, [])
  assert s.pull().shape[0] == 0 and s.controller.describe()["target"]["yaw_deg"] == 0.0
  s.push(video)
  np.testing.assert_array_equal(s.pull(), expected)
  assert s._step._cache_size() == compiled  # the same two compiled shapes

  # A new seed changes the noise; the old seed again gives the same frames again.
  s.reset(seed=4)
  s.push(video)
  assert np.abs(s.pull().astype(int) - expected.astype(int)).max() > 2
  s.reset(seed=3)
  s.push(video)
  np.testing.assert_array_equal(s.pull(), expected)
  assert s._step._cache_size() == compiled


def test_warmup_compiles_then_leaves_a_fresh_stream(models):
  from realcam_jax.inference.camera_control import CameraController
  config, *_ = models
  t = 1 + 4 * (2 * config.student.chunk_pairs - 1)
  video = _video(t, seed=1)
  controller = CameraController()
  controller.set_preset("pan_right")
  s = _session(models, controller=controller)
  seconds = s.warmup()
  assert len(seconds) == 2 and all(x > 0 for x in seconds)
  assert s.controller is controller and controller.frame == 0 and s.chunks_done == 0
  compiled = s._step._cache_size()
  s.push(video)
  ref = _session(models, controller=_pan_right())
  ref.push(video)
  np.testing.assert_array_equal(s.pull(), ref.pull())
  assert s._step._cache_size() == compiled
  with pytest.raises(RuntimeError, match="fresh stream"):
    s.warmup()


def _pan_right():
  from realcam_jax.inference.camera_control import CameraController
  c = CameraController()
  c.set_preset("pan_right")
  return c


def test_unlimited_cache_stops_with_a_clear_error_past_max_frames(models):
  """window_chunks 0 is exact: a stream longer than max_frames is an error naming the
  fields, not a silent wrap into a ring without sinks."""
  s = _session(models, max_frames=3)              # one chunk of K = 3 pairs
  first = s.chunk_frames()
  assert s.push(_video(first)) == 1
  with pytest.raises(ValueError, match=r"the stream \(9 frames\) reached chunk 2 but the "
                                       r"unlimited KV cache \(student.window_chunks=0\) holds 1 "
                                       r"chunks .*student.max_frames"):
    s.push(_video(s.chunk_frames(), seed=1))


def test_a_warped_source_student_streams_and_renders_its_anchor(models):
  """`model.prediction = warped_source`: render_offline of a fresh student decodes the
  source latents warped to the target cameras; a stream equals render_offline."""
  import jax.numpy as jnp
  from flax import nnx

  from realcam_jax.camera.pose import make_pose, rotation_y
  from realcam_jax.models.realcam import RealCamDiT
  from realcam_jax.models.warp_anchor import warped_source
  config, _, _, vae, k = models
  config = get_config("student:tiny")
  config.model.prediction = "warped_source"
  kk = config.student.chunk_pairs
  n = 2 * kk
  video = _video(1 + 4 * (n - 1), seed=5)
  poses = np.stack([make_pose(rotation_y(np.deg2rad(-6.0 * j)), np.zeros(3))
                    for j in range(n)])[None].astype(np.float32)
  graphdef, fresh = nnx.split(RealCamDiT(config.model, rngs=nnx.Rngs(0)))
  got = np.asarray(sess.render_offline(config, graphdef, fresh, vae, video[None], poses,
                                       k[None], seed=3))
  lat = vae.encode(sess.to_unit(jnp.asarray(video[None]))).astype(jnp.float32)
  want = np.asarray(sess.to_uint8(vae.decode(warped_source(config.model, lat, poses, k[None],
                                                           vae.spatial_factor))))
  np.testing.assert_allclose(got.astype(int), want.astype(int), atol=1)
  assert np.abs(got.astype(int) - np.asarray(sess.to_uint8(vae.decode(lat))).astype(int)).max() > 8
  graphdef, params = random_dit(config.model, scale=0.2)
  s = sess.StreamingSession(config, graphdef, params, vae, height=H, width=W, intrinsics=k,
                            seed=3)
  s.push(video)
  still = np.stack([np.eye(4, dtype=np.float32)] * n)[None]
  offline = np.asarray(sess.render_offline(config, graphdef, params, vae, video[None], still,
                                           k[None], seed=3))[0]
  np.testing.assert_allclose(s.pull().astype(int), offline.astype(int), atol=1)


def test_a_pixel_warp_student_renders_offline_and_the_stream_says_it_cannot(models):
  """`warp_space = "pixel"`: render_offline of a fresh student decodes the encoded video
  warp (`warp_source_video` with the same offsets from the source camera); the
  chunk-by-chunk stream refuses with a message naming the option."""
  import jax.numpy as jnp
  from flax import nnx

  from realcam_jax.camera.pose import make_pose, rotation_y
  from realcam_jax.camera.warp import warp_source_video
  from realcam_jax.models.realcam import RealCamDiT
  _, _, _, vae, k = models
  config = get_config("student:tiny")
  config.model.update(prediction="warped_source", warp_space="pixel")
  n = 2 * config.student.chunk_pairs
  video = _video(1 + 4 * (n - 1), seed=5)
  poses = np.stack([make_pose(rotation_y(np.deg2rad(-6.0 * j)), np.zeros(3))
                    for j in range(n)]).astype(np.float32)
  graphdef, fresh = nnx.split(RealCamDiT(config.model, rngs=nnx.Rngs(0)))
  got = np.asarray(sess.render_offline(config, graphdef, fresh, vae, video[None], poses[None],
                                       k[None], seed=3))[0]
  warped = warp_source_video(video, poses, None, k, config.model.warp_depth)
  lat = vae.encode(sess.to_unit(jnp.asarray(warped[None]))).astype(jnp.float32)
  want = np.asarray(sess.to_uint8(vae.decode(lat)))[0]
  np.testing.assert_allclose(got.astype(int), want.astype(int), atol=1)
  s = sess.StreamingSession(config, graphdef, fresh, vae, height=H, width=W, intrinsics=k,
                            seed=3)
  with pytest.raises(ValueError, match="stream does not support pixel anchors"):
    s.push(video)
    s.pull()

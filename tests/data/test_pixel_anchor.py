"""model.warp_space = "pixel": the source video warped and encoded as the anchor.

Against independent computations: per-frame numpy poses and `camera/warp.plane_warp` one
frame at a time, `warp_source_video` (numpy pose interpolation), the VAE encoding the
warped video directly, and the dataset's own target windows for the pipeline.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from realcam_jax.camera import warp
from realcam_jax.camera.intrinsics import intrinsics_from_fov
from realcam_jax.camera.pose import make_pose, rotation_y
from realcam_jax.cli import main as cli_main
from realcam_jax.config import get_config
from realcam_jax.data import latents
from realcam_jax.models import warp_anchor

pytestmark = pytest.mark.usefixtures("fast_compile")


def _pixel_cfg():
  cfg = get_config("configs/teacher.py:tiny,pixel_warp", []).model
  assert cfg.prediction == "warped_source" and cfg.warp_space == "pixel"
  return cfg


def _latent_poses(f):
  src = np.stack([make_pose(rotation_y(np.deg2rad(2.0 * j)), np.array([0.1 * j, 0, 0]))
                  for j in range(f)]).astype(np.float32)
  tgt = np.stack([make_pose(rotation_y(np.deg2rad(-5.0 * j)), np.array([0.0, 0.1 * j, 0.2]))
                  for j in range(f)]).astype(np.float32)
  return src, tgt


def test_pixel_anchor_is_the_video_warp_at_interpolated_poses_then_encoded():
  cfg = _pixel_cfg()
  f, t, hw = 3, 9, 16
  src_p, tgt_p = _latent_poses(f)
  K = np.asarray(intrinsics_from_fov(60.0, hw, hw), np.float32)
  video = np.random.default_rng(0).integers(0, 256, (t, hw, hw, 3), np.uint8)
  seen = []

  def encode(x):                      # stands in for the VAE: records what it is given
    seen.append(x)
    return x[:, ::4]
  got = warp_anchor.pixel_warped_source(cfg, encode, jnp.asarray(video)[None], tgt_p[None],
                                        K[None], src_p[None])
  want = warp.warp_source_video(video, tgt_p, src_p, K, cfg.warp_depth).astype(np.float32)
  np.testing.assert_allclose(np.asarray(seen[0][0]), want / 127.5 - 1.0, atol=1e-5)
  assert got.shape == (1, f, hw, hw, 3)
  # at a latent key frame the relative pose is the two cameras' at that frame (numpy)
  rel = np.asarray(warp_anchor.pixel_rel_poses(tgt_p[None], t, src_p[None]))[0]
  for j in range(f):
    np.testing.assert_allclose(rel[4 * j], np.linalg.inv(src_p[j]) @ tgt_p[j], atol=1e-5)
  # the identity camera gives the source back
  same = warp_anchor.pixel_warped_source(cfg, lambda x: x, jnp.asarray(video)[None],
                                         src_p[None], K[None], src_p[None])
  np.testing.assert_allclose(np.asarray(same[0]), video / 127.5 - 1.0, atol=1e-5)


def test_anchor_videos_warp_each_frame_at_its_own_world_pose():
  t, hw, c = 5, 16, 2
  rng = np.random.default_rng(1)
  s_c2w = np.stack([make_pose(rotation_y(np.deg2rad(1.5 * i)), np.array([0.05 * i, 0, 0]))
                    for i in range(t)]).astype(np.float32)
  t_c2w = np.stack([[make_pose(rotation_y(np.deg2rad((-3.0 - cam) * i)),
                               np.array([0, 0.1 * cam, 0.1 * i])) for i in range(t)]
                    for cam in range(c)]).astype(np.float32)
  K = np.asarray(intrinsics_from_fov(55.0, hw, hw), np.float32)
  rec = dict(source_rgb=rng.integers(0, 256, (t, hw, hw, 3), np.uint8), source_c2w=s_c2w,
             target_c2w=t_c2w, intrinsics=K)
  got = latents.anchor_videos(rec, 8.0)
  assert got.shape == (c, t, hw, hw, 3) and got.dtype == np.uint8
  for cam in range(c):
    for i in range(t):
      rel = (np.linalg.inv(s_c2w[i].astype(np.float64)) @ t_c2w[cam, i])[None]
      ref, _ = warp.plane_warp(rec["source_rgb"][i:i + 1], rel.astype(np.float32), K, 8.0)
      ref = np.clip(np.round(np.asarray(ref[0])), 0, 255)
      assert np.abs(got[cam, i].astype(int) - ref.astype(int)).max() <= 1, (cam, i)
  with pytest.raises(latents.LatentDatasetError, match="source_c2w"):
    latents.anchor_videos(dict(source_rgb=rec["source_rgb"]), 8.0)


def _window_of(batch_target, rec_target):
  """(camera, start) of the record's target window equal to a batch row."""
  c, f = rec_target.shape[:2]
  n = batch_target.shape[0]
  for cam in range(c):
    for s in range(f - n + 1):
      if np.allclose(rec_target[cam, s:s + n], batch_target, atol=1e-6):
        return cam, s
  return None


def test_encode_with_anchor_depth_and_train_on_it(tiny_dataset, vae_ckpt, latent_reader_config,
                                                  tmp_path):
  reader_config = latent_reader_config
  data_dir, data_cfg = tiny_dataset
  ckpt, vae = vae_ckpt
  out = str(tmp_path / "lat")
  assert cli_main(["data", "encode", "--config", "data:tiny", "--data-dir", data_dir,
                   "--vae", ckpt, "--out", out, "--anchor-depth", "8"]) == 0
  meta = json.load(open(os.path.join(out, "meta.json")))
  assert meta["anchor_depth"] == 8.0
  assert meta["record_shapes"]["anchor_latent"] == meta["record_shapes"]["target_latent"]
  rec = latents.open_build(data_dir, data_cfg.data, ["validation"])["validation"][0]
  got = latents.LatentSource(out, "validation")[0]
  want = np.asarray(nnx.jit(lambda m, x: m.encode(x))(
      vae, latents.anchor_videos(rec, 8.0).astype(np.float32) / 127.5 - 1.0))
  np.testing.assert_allclose(got["anchor_latent"], want, rtol=1e-4, atol=1e-5)
  assert np.abs(got["anchor_latent"] - got["target_latent"]).max() > 1e-3

  # A pixel-warp reader gets the anchor of the same camera and window as the target.
  cfg = reader_config(out)
  cfg.model.update(prediction="warped_source", warp_space="pixel", warp_depth=8.0)
  train = latents.LatentSource(out, "train")
  recs = [train[i] for i in range(len(train))]
  it = latents.make_iterator(cfg, split="train", shard_index=0, shard_count=1)
  for _ in range(3):
    batch = next(it)
    assert batch["anchor_latents"].shape == batch["target_latents"].shape
    for b in range(batch["target_latents"].shape[0]):
      hits = [(r, _window_of(batch["target_latents"][b], r["target_latent"])) for r in recs]
      r, (cam, s) = next((r, w) for r, w in hits if w is not None)
      n = batch["target_latents"].shape[1]
      np.testing.assert_allclose(batch["anchor_latents"][b], r["anchor_latent"][cam, s:s + n],
                                 atol=1e-6)
  assert warp_anchor.batch_anchor(cfg.model, batch, 4) is batch["anchor_latents"]

  # LoopAug palindromes carry the anchor with them; a source that does not repeat cannot.
  cfg.data.loopaug_fraction = 1.0
  loop = next(latents.make_iterator(cfg, split="train", shard_index=0, shard_count=1))
  np.testing.assert_array_equal(loop["anchor_latents"][:, 0], loop["anchor_latents"][:, 2])
  cfg.data.loopaug_variant = "forward_source"
  with pytest.raises(ValueError, match="palindrome"):
    next(latents.make_iterator(cfg, split="train", shard_index=0, shard_count=1))

  # Wrong depth, or a dataset without anchors: named, with the command that fixes it.
  cfg = reader_config(out)
  cfg.model.update(prediction="warped_source", warp_space="pixel", warp_depth=4.0)
  with pytest.raises(latents.LatentDatasetError, match="warped at 8.0 m"):
    latents.make_iterator(cfg, split="train")
  plain = str(tmp_path / "plain")
  assert cli_main(["data", "encode", "--config", "data:tiny", "--data-dir", data_dir,
                   "--vae", ckpt, "--out", plain, "--splits", "validation"]) == 0
  cfg = reader_config(plain)
  cfg.model.update(prediction="warped_source", warp_space="pixel", warp_depth=8.0)
  with pytest.raises(latents.LatentDatasetError, match="--anchor-depth 8"):
    latents.make_iterator(cfg, split="validation")


def test_pixel_anchor_errors_are_named():
  cfg = _pixel_cfg()
  batch = dict(source_latents=np.zeros((1, 3, 4, 4, 4)), target_poses=np.zeros((1, 3, 4, 4)),
               intrinsics=np.zeros((1, 3, 3)), source_poses=np.zeros((1, 3, 4, 4)))
  with pytest.raises(ValueError, match="anchor-depth"):
    warp_anchor.batch_anchor(cfg, batch, 4)
  with pytest.raises(ValueError, match="stream does not support pixel anchors"):
    warp_anchor.anchor_for(cfg, batch["source_latents"], batch["target_poses"],
                           batch["intrinsics"], 4)
  cfg.warp_space = "voxel"
  with pytest.raises(ValueError, match="warp_space='voxel'"):
    warp_anchor.batch_anchor(cfg, batch, 4)
  with pytest.raises(latents.LatentDatasetError, match="plane distance"):
    latents.encode_dataset({}, None, "/nonexistent", anchor_depth=0.0)
  with pytest.raises(ValueError, match="target poses"):
    warp_anchor.pixel_warped_source(cfg, lambda x: x, jnp.zeros((1, 5, 8, 8, 3)),
                                    jnp.zeros((2, 2, 4, 4)), jnp.zeros((1, 3, 3)))

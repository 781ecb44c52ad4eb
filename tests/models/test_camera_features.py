"""Camera features: what the network is conditioned on, per `model.camera_reference`."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from realcam_jax import camera as cam
from realcam_jax.models.camera_features import (batch_camera_features, camera_features,
                                                model_poses)


def _cfg(reference, encoding="pose12", patch=(1, 2, 2)):
  return ml_collections.ConfigDict(dict(camera_reference=reference, camera_encoding=encoding,
                                        patch_size=patch))


def _poses(b, f, seed):
  rng = np.random.default_rng(seed)
  rot = Rotation.random(b * f, random_state=seed).as_matrix().reshape(b, f, 3, 3)
  return cam.make_pose(rot, rng.normal(size=(b, f, 3))).astype(np.float32)


def _inv(p):
  return np.linalg.inv(p.astype(np.float64))


def test_pair_reference_is_the_target_in_the_source_camera_of_the_same_frame():
  src, tgt = _poses(2, 4, 0), _poses(2, 4, 1)
  got = np.asarray(model_poses(_cfg("pair"), tgt, src))
  np.testing.assert_allclose(got, _inv(src) @ tgt, atol=1e-5)
  # Independent of the frame both are written in (first source frame or the world).
  world = _poses(2, 1, 2)
  moved = np.asarray(model_poses(_cfg("pair"), world @ tgt, world @ src))
  np.testing.assert_allclose(moved, got, atol=1e-5)
  # The identity camera (target = source) is the identity at every frame, however the
  # source moves; with source_first it is the source's own motion.
  np.testing.assert_allclose(np.asarray(model_poses(_cfg("pair"), src, src)),
                             np.broadcast_to(np.eye(4), src.shape), atol=1e-5)
  np.testing.assert_array_equal(np.asarray(model_poses(_cfg("source_first"), tgt, src)), tgt)
  # Without source poses the poses are taken as offsets from the source camera already.
  np.testing.assert_array_equal(np.asarray(model_poses(_cfg("pair"), tgt, None)), tgt)


@pytest.mark.parametrize("encoding", ["pose12", "plucker"])
def test_features_follow_the_reference(encoding):
  src, tgt = _poses(1, 3, 3), _poses(1, 3, 4)
  k = jnp.asarray([[[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]])
  pair = camera_features(_cfg("pair", encoding), tgt, k, (4, 4), 8, src)
  first = camera_features(_cfg("source_first", encoding), (_inv(src) @ tgt).astype(np.float32),
                          k, (4, 4), 8)
  np.testing.assert_allclose(np.asarray(pair), np.asarray(first), atol=1e-5)
  assert float(jnp.abs(pair - camera_features(_cfg("source_first", encoding), tgt, k, (4, 4),
                                               8, src)).max()) > 1e-2


def test_errors_name_the_field():
  src, tgt = _poses(1, 3, 0), _poses(1, 3, 1)
  with pytest.raises(ValueError, match="camera_reference='world'"):
    model_poses(_cfg("world"), tgt, src)
  with pytest.raises(ValueError, match="source poses .* must match"):
    model_poses(_cfg("pair"), tgt, src[:, :2])
  batch = dict(target_poses=tgt, intrinsics=np.eye(3, dtype=np.float32)[None])
  with pytest.raises(ValueError, match="needs the batch's source_poses"):
    batch_camera_features(_cfg("pair"), batch, (4, 4), 8)
  batch_camera_features(_cfg("source_first"), batch, (4, 4), 8)   # fine without them

"""Wan VAE: shapes, streaming == whole video, latent normalisation, strict input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from realcam_jax.config import get_config
from realcam_jax.models import vae as V


pytestmark = pytest.mark.usefixtures("fast_compile")


@pytest.fixture(scope="module")
def vae():
  cfg = get_config("vae:tiny").model
  cfg.latents_mean = tuple(np.linspace(-0.5, 0.5, cfg.z_dim).tolist())
  cfg.latents_std = tuple(np.linspace(0.5, 2.0, cfg.z_dim).tolist())
  return V.create_vae(cfg, seed=0)


@pytest.fixture(scope="module")
def video():  # 13 = 1 + 4*3 frames, non-square so H/W mix-ups show
  return jax.random.uniform(jax.random.key(1), (1, 13, 16, 24, 3), minval=-1.0, maxval=1.0)


@pytest.fixture(scope="module")
def whole(vae, video):
  graphdef, state = nnx.split(vae)
  enc = jax.jit(lambda s, x: nnx.merge(graphdef, s).encode(x))
  dec = jax.jit(lambda s, z: nnx.merge(graphdef, s).decode(z))
  z = enc(state, video)
  return z, dec(state, z)


@pytest.fixture(scope="module")
def fns(vae):
  return V.make_stream_fns(vae)


def test_shapes_and_factors(vae, whole):
  z, y = whole
  assert (vae.spatial_factor, vae.temporal_factor, vae.z_dim) == (8, 4, 4)
  assert z.shape == (1, 4, 2, 3, 4) == V.latent_shape(vae, 1, 13, 16, 24)
  assert y.shape == (1, 13, 16, 24, 3)
  assert float(jnp.abs(y).max()) <= 1.0


def test_stream_encode_equals_whole(vae, video, whole, fns):
  chunks = list(V.encode_chunks(vae, video, fns=fns))
  assert [c.shape[1] for c in chunks] == [1, 1, 1, 1]
  np.testing.assert_allclose(jnp.concatenate(chunks, 1), whole[0], rtol=1e-5, atol=1e-5)


def test_stream_decode_equals_whole(vae, whole, fns):
  z, y = whole
  chunks = list(V.decode_chunks(vae, z, fns=fns))   # one latent frame at a time
  assert [c.shape[1] for c in chunks] == [1, 4, 4, 4]
  np.testing.assert_allclose(jnp.concatenate(chunks, 1), y, rtol=1e-5, atol=1e-5)
  # Uneven chunks: 2 latent frames first (1 + 4 frames), then 1 and 1.
  cache = V.init_decode_cache(vae, 1, 16, 24)
  outs = []
  for sl in (slice(0, 2), slice(2, 3), slice(3, 4)):
    cache, frames = fns.decode(cache, z[:, sl])
    outs.append(frames)
  assert [o.shape[1] for o in outs] == [5, 4, 4]
  np.testing.assert_allclose(jnp.concatenate(outs, 1), y, rtol=1e-5, atol=1e-5)


def test_cache_shapes_are_fixed(vae, video, fns):
  def spec(cache):
    return jax.tree.map(lambda a: (a.shape, a.dtype), cache.layers)
  cache0 = V.init_encode_cache(vae, 1, 16, 24)
  cache1, _ = fns.encode(cache0, video[:, :1])
  cache2, _ = fns.encode(cache1, video[:, 1:5])
  cache3, _ = fns.encode(cache2, video[:, 5:9])
  assert not cache0.started and cache1.started
  assert spec(cache0) == spec(cache1) == spec(cache2) == spec(cache3)
  # -> one compile serves all later chunks
  assert jax.tree.structure(cache2) == jax.tree.structure(cache3)


def test_latent_normalisation(vae):
  mu = jax.random.normal(jax.random.key(2), (1, 2, 1, 1, 4))
  mean, std = np.asarray(vae.latents_mean), np.asarray(vae.latents_std)
  np.testing.assert_allclose(vae.normalize(mu), (np.asarray(mu) - mean) / std, rtol=1e-6)
  np.testing.assert_allclose(vae.denormalize(vae.normalize(mu)), mu, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("shape, words", [
    ((1, 9, 15, 16, 3), ["15x16", "height 15", "8 or 16"]),
    ((1, 9, 16, 20, 3), ["width 20", "16 or 24"]),
    ((1, 6, 16, 16, 3), ["6 frames", "1 + 4*k", "5 or 9"]),
    ((1, 9, 16, 16, 4), ["4 channels", "takes 3"]),
    ((9, 16, 16, 3), ["[batch, frames, height, width, 3]"]),
])
def test_bad_video_errors(vae, shape, words):
  with pytest.raises(V.VAEInputError) as e:
    vae.encode(jnp.zeros(shape))
  for w in words:
    assert w in str(e.value), (w, str(e.value))


def test_uint8_video_error(vae):
  with pytest.raises(V.VAEInputError, match="127.5"):
    vae.encode(jnp.zeros((1, 1, 8, 8, 3), jnp.uint8))


def test_bad_latents_error(vae):
  with pytest.raises(V.VAEInputError, match="latent_frames>=1, height, width, 4"):
    vae.decode(jnp.zeros((1, 2, 2, 2, 16)))


def test_stream_chunk_errors(vae):
  cache = V.init_encode_cache(vae, 1, 16, 16)
  with pytest.raises(V.VAEInputError, match="first chunk of a stream must have 1 \\+ 4\\*k"):
    V.encode_chunk(vae, cache, jnp.zeros((1, 4, 16, 16, 3)))
  started = cache.replace(started=True)
  with pytest.raises(V.VAEInputError, match="multiple of 4 frames \\(nearest accepted: 4\\)"):
    V.encode_chunk(vae, started, jnp.zeros((1, 3, 16, 16, 3)))
  with pytest.raises(V.VAEInputError, match="started at 16x16"):
    V.encode_chunk(vae, started, jnp.zeros((1, 4, 16, 24, 3)))
  with pytest.raises(V.VAEInputError, match="batch 2"):
    V.encode_chunk(vae, started, jnp.zeros((2, 4, 16, 16, 3)))
  with pytest.raises(V.VAEInputError, match="decode_chunk needs a cache from init_decode_cache"):
    V.decode_chunk(vae, cache, jnp.zeros((1, 1, 2, 2, 4)))
  dcache = V.init_decode_cache(vae, 1, 16, 16)
  with pytest.raises(V.VAEInputError, match="2x2 latents"):
    V.decode_chunk(vae, dcache, jnp.zeros((1, 1, 3, 2, 4)))
  with pytest.raises(V.VAEInputError, match="multiples of the VAE's spatial factor 8"):
    V.init_decode_cache(vae, 1, 20, 16)


def test_fit_video():
  x = np.arange(10 * 70 * 61).reshape(1, 10, 70, 61, 1).astype(np.float32)
  y = V.fit_video(x)
  assert y.shape == (1, 9, 72, 64, 1) and V.fitted_size(70, 61, 10) == (72, 64, 9)
  np.testing.assert_array_equal(y[:, :, 1:71, 1:62], x[:, :9])    # padded 1 | 1 and 1 | 2
  np.testing.assert_array_equal(y[:, :, 0], y[:, :, 1])            # edge-replicated
  z = V.fit_video(np.zeros((3, 68, 20, 3)))                        # ties -> crop; T 3 -> 1
  assert z.shape == (1, 64, 16, 3)
  w = V.fit_video(np.zeros((7, 4, 8, 3)))                          # 4 px -> pad to 8; T tie -> 5
  assert w.shape == (5, 8, 8, 3)


@pytest.mark.parametrize("kernel, stride, pad", [((3, 3, 3), (1, 1, 1), (1, 1)),
                                                 ((3, 1, 1), (2, 1, 1), (0, 0)),
                                                 ((1, 1, 1), (1, 1, 1), (0, 0))])
def test_conv3d_impls_agree(kernel, stride, pad):
  from realcam_jax.models.vae.layers import conv3d
  kx, kk = jax.random.split(jax.random.key(3))
  x = jax.random.normal(kx, (2, 7, 6, 5, 4))
  k = jax.random.normal(kk, kernel + (4, 3))
  a = conv3d(x, k, stride, pad, "conv3d")
  b = conv3d(x, k, stride, pad, "taps")
  assert a.shape == b.shape
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

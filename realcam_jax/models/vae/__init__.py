"""The Wan2.1 causal 3D VAE in Flax NNX, with streaming (chunk-by-chunk) encode/decode.

    vae = WanVAE.from_config(get_config("vae:wan2_1").model, rngs=nnx.Rngs(0))
    z = vae.encode(video)          # [B, 1+4k, H, W, 3] in [-1, 1] -> [B, 1+k, H/8, W/8, 16]
    video_hat = vae.decode(z)

See `model.py` (shapes, latent normalisation), `streaming.py` (feature cache) and
`inputs.py` (the strict input policy and `fit_video`).
"""

from realcam_jax.models.vae.inputs import (VAEInputError, check_latents, check_video, fit_video,
                                           fitted_size)
from realcam_jax.models.vae.model import WanVAE, create_vae, latent_shape, sample_posterior
from realcam_jax.models.vae.streaming import (StreamFns, VAECache, decode_chunk, decode_chunks,
                                              encode_chunk, encode_chunk_moments, encode_chunks,
                                              init_decode_cache, init_encode_cache,
                                              make_stream_fns)

__all__ = [
    "VAEInputError", "check_latents", "check_video", "fit_video", "fitted_size", "WanVAE",
    "create_vae",
    "latent_shape", "sample_posterior", "StreamFns", "VAECache", "decode_chunk", "decode_chunks",
    "encode_chunk", "encode_chunk_moments", "encode_chunks", "init_decode_cache",
    "init_encode_cache", "make_stream_fns",
]

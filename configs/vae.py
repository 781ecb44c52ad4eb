"""The Wan2.1-architecture causal video VAE: `configs/vae.py:tiny|demo|wan2_1`.

  tiny    unit tests: base_dim 8, z 4, 1 res block per stage, 4 stages (8x spatial,
          4x temporal like Wan), 0.64M parameters; identity latent normalisation.
  demo    the CPU demo VAE trained on synthetic clips (64x64 px, 33 frames ->
          9 latent frames of 8x8x16, what the demo DiT expects): base_dim 16, z 16,
          1 res block per stage (2.6M parameters, 10 MB in f32: small enough to ship).
          latents_mean/std are measured on training clips after training
          (`launch/train_vae.py` writes them into the checkpoint's config).
  demo4x  the demo VAE at 4x spatial compression (issue 19: the 8x demo VAE plateaued at
          26 dB): 3 stages (dim_mult (1, 2, 4), temporal downsampling (True, True)), so
          64x64 px, 33 frames -> 9 latent frames of 16x16x16; base_dim 16, z 16, 1 res block.
  wan2_1  the released Wan2.1 VAE (`Wan2.1_VAE.pth` / diffusers `AutoencoderKLWan`
          defaults): base_dim 96, z 16, dim_mult (1, 2, 4, 4), 2 res blocks,
          temporal downsampling (False, True, True), Wan's latents_mean/std.

`model.temporal_downsample` is diffusers' `temperal_downsample` (spelling fixed).
"""

import ml_collections

from configs import common

# diffusers AutoencoderKLWan defaults (= Wan2.1's `mean`/`std` in wan/modules/vae.py).
WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)

_SIZES = {
    "tiny": dict(base_dim=8, z_dim=4, num_res_blocks=1),
    "demo": dict(base_dim=16, z_dim=16, num_res_blocks=1),
    "demo4x": dict(base_dim=16, z_dim=16, num_res_blocks=1, dim_mult=(1, 2, 4),
                   temporal_downsample=(True, True)),
    "wan2_1": dict(base_dim=96, z_dim=16),
}


def model_config(size: str) -> ml_collections.ConfigDict:
  if size not in _SIZES:
    raise ValueError(f"unknown VAE size {size!r}; expected one of {sorted(_SIZES)}")
  c = ml_collections.ConfigDict()
  c.size = size
  c.base_dim = 96
  c.z_dim = 16
  c.decoder_base_dim = None            # None = base_dim
  c.dim_mult = (1, 2, 4, 4)
  c.num_res_blocks = 2
  c.temporal_downsample = (False, True, True)
  c.update(_SIZES[size])
  c.in_channels = 3
  c.out_channels = 3
  z = c.z_dim
  wan = size == "wan2_1"
  c.latents_mean = WAN21_LATENTS_MEAN if wan else (0.0,) * z
  c.latents_std = WAN21_LATENTS_STD if wan else (1.0,) * z
  c.conv_impl = "auto"                 # causal 3D convs: auto | conv3d | taps (2D, fast on CPU)
  c.dtype = "float32"                  # activations; bfloat16 on accelerators
  c.param_dtype = "float32"
  return c


def data_config(size: str) -> ml_collections.ConfigDict:
  """Synthetic training clips for `launch/train_vae.py` (see realcam_jax/train/vae.py)."""
  tiny = size == "tiny"
  d = ml_collections.ConfigDict()
  d.seed = 0
  d.height, d.width = (32, 32) if tiny else (64, 64)
  d.clip_frames = 9 if tiny else 33       # rendered clip length (evaluation encodes whole clips)
  d.target_cameras = 1                    # each scene gives 1 + this many videos
  d.pool_clips = 2 if tiny else 200       # training scenes rendered once (cached as .npy)
  d.eval_clips = 1 if tiny else 16        # held-out scenes (other seeds)
  d.stats_clips = 2 if tiny else 64       # videos for the latent mean/std
  # Per example: a window of 1 + 4k frames and a random square crop. The model is
  # convolutional (the mid attention is per frame), so small crops train the 64x64
  # decoder at a quarter of the cost. 9 frames = the first-frame path + a chunk whose
  # causal cache comes from the first frame + a chunk whose cache comes from a full
  # chunk (the steady state of every later chunk). With 5 frames the steady state is
  # never trained: a demo VAE trained so reconstructed frames 1-4 at 28 dB and
  # frames 9-32 at ~11 dB.
  d.train_frames = 9
  d.crop = 16 if tiny else 32
  d.cache_dir = ""                        # "" = the workdir
  return d


def get_config(arg=None):
  size = arg or "tiny"
  tiny = size == "tiny"
  config = ml_collections.ConfigDict()
  config.stage = "vae"
  config.seed = 0
  config.model = model_config(size)
  config.mesh = common.mesh_config()
  config.data = data_config(size)
  config.loss = ml_collections.ConfigDict(dict(
      l1_weight=1.0, l2_weight=1.0, kl_weight=1e-4, gdl_weight=0.5, sample_posterior=True))
  config.optim = ml_collections.ConfigDict(dict(
      lr=1e-3 if tiny else 3e-4, warmup_steps=2 if tiny else 200, schedule="constant",
      total_steps=0, b1=0.9, b2=0.99, weight_decay=0.0, clip_norm=1.0))
  config.train = ml_collections.ConfigDict(dict(
      batch_size=8,                   # tiny: one example per device of the 8-CPU test mesh
      num_steps=2 if tiny else 20000,
      log_every=1 if tiny else 25, ckpt_every=2 if tiny else 500, keep=3))
  return config

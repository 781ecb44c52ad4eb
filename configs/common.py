"""Pieces shared by the config files: model sizes, mesh, data shapes.

Sizes:
  tiny         for unit tests: a few thousand parameters, runs in milliseconds on CPU.
  demo         trainable on 2 CPU cores: width 256, 4 blocks, 4 heads of 64. At the demo
               clip (64x64 px, 33 frames -> 9 latent frames of 8x8, patch 2 -> 16 tokens per
               latent frame, 288 tokens for the 18 interleaved frames) one forward+backward
               at batch 8 is ~1-2 s on this CPU (design.md §7-8 calibration: d=256, 4 layers,
               1024 tokens f+b 0.66 s), so ~2k steps fit in an hour and a 4-step student
               chunk (3 pairs = 96 tokens) runs far inside the real-time budget.
  wan2_1_1_3b  Wan2.1-T2V-1.3B exactly (30 blocks, dim 1536, 12x128 heads, FFN 8960,
               text 4096 x 512 tokens, patch (1,2,2), 16 latent channels).
"""

import ml_collections

MODEL_SIZES = {
    "tiny": dict(in_channels=4, out_channels=4, dim=32, ffn_dim=64, num_heads=2,
                 num_layers=2, text_dim=16, text_len=4, freq_dim=32),
    "demo": dict(in_channels=16, out_channels=16, dim=256, ffn_dim=1024, num_heads=4,
                 num_layers=4, text_dim=64, text_len=1, freq_dim=256),
    "wan2_1_1_3b": dict(in_channels=16, out_channels=16, dim=1536, ffn_dim=8960,
                        num_heads=12, num_layers=30, text_dim=4096, text_len=512,
                        freq_dim=256),
}


def model_config(size: str) -> ml_collections.ConfigDict:
  """The DiT backbone config (names follow diffusers' WanTransformer3DModel)."""
  if size not in MODEL_SIZES:
    raise ValueError(f"unknown model size {size!r}; expected one of {sorted(MODEL_SIZES)}")
  c = ml_collections.ConfigDict()
  c.size = size
  c.update(MODEL_SIZES[size])
  c.patch_size = (1, 2, 2)
  c.eps = 1e-6
  c.cross_attn_norm = True
  c.rope_max_seq_len = 1024
  c.rope_theta = 10000.0
  # Numerics and memory.
  c.dtype = "float32"          # activations; bfloat16 on accelerators
  c.param_dtype = "float32"
  c.remat_policy = "none"      # none | full | dots_saveable | dots_with_no_batch_dims_saveable
  c.scan_layers = True
  c.attention_impl = "dot_product"  # dot_product | xla | cudnn (GPU) | blockwise | splash (TPU)
  # RealCam conditioning (design.md §3).
  c.layout = "interleaved"     # interleaved [s1,t1,s2,t2,...] | prefix [s1..sf,t1..tf]
  c.pair_rope = "shared"       # shared (pair shares temporal index) | sequential (2i, 2i+1)
  c.camera_encoding = "pose12" # pose12 (zero-init Linear(12->dim) per block) | plucker
  c.camera_reference = "source_first"  # source_first (ReCamMaster) | pair (each target frame
                               # relative to the source camera at the same frame; demo option)
  c.source_skip = False        # zero-init pair-aligned skip from source to target tokens
  c.prediction = "velocity"    # velocity (Wan) | source_residual (x0 = source + out; the zero-init
                               # head makes the model start by copying its source; demo option)
                               # | warped_source (x0 = the source warped to the target camera
                               # through a plane + out; models/warp_anchor.py; demo option)
  c.anchor_std = 0.0           # > 0: the residual predictions are preconditioned around their
                               # anchor with this anchor-error std (models/realcam.py precondition)
  c.warp_depth = 8.0           # warped_source: plane distance from the source camera (scene
                               # units; the demo rig's subject is 6-9.5 m away)
  c.warp_space = "latent"      # warped_source: warp the source latents | "pixel": warp the
                               # source frames and encode them (models/warp_anchor.py)
  # Per-block conditioning hook of the DiT: width of `block_cond` fed through each block's
  # zero-initialised cond_proj into the self-attention input (0 = none: Wan's exact tree).
  c.block_cond_dim = 0
  return c


def mesh_config() -> ml_collections.ConfigDict:
  """Mesh axis sizes (-1 means 'all remaining devices') and the activation rule table.

  rules: `default`, or `context` to shard the token axis of activations over the
  `context` mesh axis (sequence parallelism for long sequences; see docs/scaling.md).
  """
  c = ml_collections.ConfigDict()
  c.data = -1
  c.fsdp = 1
  c.tensor = 1
  c.context = 1
  c.rules = "default"
  return c

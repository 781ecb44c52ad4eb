"""Teacher training: `configs/teacher.py:SIZE[,ABLATION...]`.

SIZE: tiny | demo | wan2_1_1_3b. ABLATIONS (combine with commas):
  prefix       ReCamMaster's baseline: prefix layout with sequential frame positions
               (sources 0..F-1, targets F..2F-1, as frame concatenation gives), same
               code; with pair RoPE "shared" the prefix layout is only a permutation
               of the interleaved tokens and computes the same function
  sequential   pair RoPE (2i, 2i+1) instead of a shared temporal index
  plucker      Plücker-ray camera encoding instead of the 12-d pose
  no_motion    motion-loss weight a = 0
  source_skip     zero-initialised pair-aligned source skip (design.md §8); on by
                  default for the demo size, where CPU training time is short and
                  learning to use the source from scratch is the hard part
  no_source_skip  turn it off (the Wan-compatible default of tiny and full size)
  source_residual  the head predicts a residual on the paired source latent (x0 = source +
               out; Wan's zero-init head makes the model start by copying its source;
               models/realcam.py), instead of Wan's velocity (issue 19 pilots)
  warped_source  the head predicts a residual on the source latents warped to the target
               camera through the plane z = model.warp_depth of the source camera
               (models/warp_anchor.py): a fresh model re-renders camera rotations exactly;
               the source skip carries the warped tokens (issue 19 pilots)
  pixel_warp   warped_source with model.warp_space = "pixel": the anchor is the source
               *video* warped through the plane and encoded by the VAE (1 dB above the
               latent warp through the 4x VAE); training reads it from a latent dataset
               encoded with `realcam data encode --anchor-depth` (issue 19 pilots)
  anchor_precond  model.anchor_std = 0.7: the residual preconditioned around its anchor
               (x0_hat = a + c_skip (x_t - (1 - sigma) a) + c_out out; 0.7 ~ the rms error
               of the 8 m latent warp on the 4x demo latents, 0.54 mean square)
  x0_loss      objective.loss_weighting = x0: the velocity error times sigma (the x0
               error), instead of the plain velocity error
  vae4x        latents of the 4x-spatial demo VAE (configs/vae.py:demo4x): 16x16 latent
               frames, so with patch 2 a token covers 8x8 px (64 tokens per latent frame)
               instead of 16x16 px (issue 19)

Starting from the public Wan2.1 weights: `--config.train.init_from=DIR` with DIR from
`realcam convert --model dit --config configs/dit.py:SIZE --out DIR` (same SIZE and
model overrides as the teacher). Every Wan parameter of the backbone is read from DIR
(shape-checked); the RealCam-only layers (camera cond_proj, stream embedding, source
skip) keep their zero init. "" (default) = random init from `seed`. It applies only to
a run that starts at step 0; a resumed run restores its own checkpoint.
"""

import ml_collections

from configs import common

ABLATIONS = {
    "prefix": lambda c: c.model.update(layout="prefix", pair_rope="sequential"),
    "sequential": lambda c: setattr(c.model, "pair_rope", "sequential"),
    "plucker": lambda c: setattr(c.model, "camera_encoding", "plucker"),
    "no_motion": lambda c: setattr(c.objective, "motion_weight", 0.0),
    "source_skip": lambda c: setattr(c.model, "source_skip", True),
    "no_source_skip": lambda c: setattr(c.model, "source_skip", False),
    "source_residual": lambda c: setattr(c.model, "prediction", "source_residual"),
    "pair_camera": lambda c: setattr(c.model, "camera_reference", "pair"),
    "warped_source": lambda c: setattr(c.model, "prediction", "warped_source"),
    "pixel_warp": lambda c: c.model.update(prediction="warped_source", warp_space="pixel"),
    "anchor_precond": lambda c: setattr(c.model, "anchor_std", 0.7),
    "x0_loss": lambda c: setattr(c.objective, "loss_weighting", "x0"),
    "vae4x": lambda c: (c.data.update(latent_height=c.data.latent_height * 2,
                                      latent_width=c.data.latent_width * 2),
                        setattr(c.model, "vae_spatial_factor", 4)),
}


def data_config(size: str) -> ml_collections.ConfigDict:
  d = ml_collections.ConfigDict()
  d.source = "random" if size == "tiny" else "latents"
  d.seed = 0
  d.num_examples = 64
  d.dataset_dir = "data/synthetic_demo_latents"
  d.latent_frames = {"tiny": 3, "demo": 9, "wan2_1_1_3b": 21}[size]
  d.latent_height = {"tiny": 4, "demo": 8, "wan2_1_1_3b": 60}[size]
  d.latent_width = {"tiny": 4, "demo": 8, "wan2_1_1_3b": 104}[size]
  d.latent_channels = common.MODEL_SIZES[size]["in_channels"]
  d.num_workers = 0
  d.loopaug_variant = "palindrome"   # LoopAug windows (student mix): palindrome | forward_source
  d.text_dir = ""          # `realcam text encode --out` dir: caption embeddings ("" = null text)
  return d


def get_config(arg=None):
  size, *ablations = (arg or "tiny").split(",")
  c = ml_collections.ConfigDict()
  c.stage = "teacher"
  c.seed = 0
  c.model = common.model_config(size)
  c.model.vae_spatial_factor = 8
  c.model.source_skip = size == "demo"
  c.mesh = common.mesh_config()
  c.data = data_config(size)

  c.objective = ml_collections.ConfigDict(dict(
      shift=5.0, sigma_min=0.0, sigma_max=1.0, motion_weight=0.1, cond_dropout=0.1,
      loss_weighting="velocity"))   # velocity | x0 (train/teacher.py)
  # Demo: guidance lowers fidelity to the ground truth on the synthetic world (held-out
  # PSNR of the demo teacher at step 2800, 4 test scenes of 33 frames: cfg 1.0 17.8 dB,
  # 2.0 16.8, 3.0 16.3; 5.0 gave 15.3 at step 2400), so the demo samples without it
  # (one pass per step). `realcam bench` times the teacher / prefix baseline with the
  # Wan convention instead (--config.teacher.sampler.cfg_scale=5.0: two passes).
  # noise_scale: the starting noise's scale (1 = sample the model; < 1 = lower temperature,
  # inference/teacher_sampler.py)
  c.sampler = ml_collections.ConfigDict(dict(steps=50, shift=5.0,
                                             cfg_scale=1.0 if size == "demo" else 5.0,
                                             noise_scale=1.0))
  c.optim = ml_collections.ConfigDict(dict(
      lr={"tiny": 1e-3, "demo": 3e-4, "wan2_1_1_3b": 2e-5}[size], warmup_steps=100 if size != "tiny" else 2,
      schedule="constant", total_steps=0, b1=0.9, b2=0.999, weight_decay=0.0, clip_norm=1.0))
  c.train = ml_collections.ConfigDict(dict(
      batch_size={"tiny": 8, "demo": 8, "wan2_1_1_3b": 64}[size],
      num_steps={"tiny": 4, "demo": 6000, "wan2_1_1_3b": 20000}[size],
      log_every={"tiny": 1, "demo": 20, "wan2_1_1_3b": 50}[size],
      ckpt_every={"tiny": 2, "demo": 200, "wan2_1_1_3b": 1000}[size],
      keep=3,
      # EMA weights (train/teacher.py): decay 0 = none; inference and the student read them.
      # The full-size plan (scale/memory_plan.py) counts no EMA copy, so it stays off there.
      ema_decay={"tiny": 0.5, "demo": 0.999, "wan2_1_1_3b": 0.0}[size],
      ema_start={"tiny": 1, "demo": 1000, "wan2_1_1_3b": 0}[size],
      init_from=""))  # converted Wan2.1 DiT dir (realcam convert --model dit); "" = seed init
  if size == "tiny":
    c.sampler.steps = 4
  for name in ablations:
    if name not in ABLATIONS:
      raise ValueError(f"unknown teacher ablation {name!r}; expected any of {sorted(ABLATIONS)}")
    ABLATIONS[name](c)
  return c

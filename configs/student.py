"""Student distillation (ODE init, then Self-Forcing + DMD): `configs/student.py:SIZE[,ABL...]`.

SIZE: tiny | demo | wan2_1_1_3b. The teacher's config at the same size is embedded as
`config.teacher`; `config.model` and `config.mesh` are the teacher's sections (teacher,
critic and student share one architecture). ABLATIONS (combine with commas):
  chunk1       chunks of K=1 frame pair instead of 3
  no_loopaug   no LoopAug sequences in the training mix
  forward_source  LoopAug whose source runs forward while the target returns
               (data.loopaug_variant; the palindrome repeats the source, issue 18)
  window       rolling attention window of 2 chunks plus 1 sink chunk (the demo default:
               at the 3-chunk training length it equals unlimited attention, and it keeps
               the cost per chunk constant on endless streams)
  no_window    unlimited attention over the cache (student.max_frames latent frames,
               exact: a longer stream is an error naming student.max_frames)
  long_rollout training clips of >= sink + window + 2 chunks (demo: 15 latent frames), so that
               the Self-Forcing rollouts reach the streaming steady state and the gap
               between the sink and the window (see "Positions" below); with no window
               it does nothing
  ode_clean    ODE init with clean history (`student.ode_history = "clean"`, the default
               since the 2026-12-07 pilot; kept so earlier commands replay)
  ode_independent  ODE init with CausVid's independent levels (`student.ode_history =
               "independent"`, the default before that pilot)
  source_once  a chunk's source tokens do not attend to its targets, so a stream computes
               their keys/values once per chunk and every denoising step and the commit run
               the target tokens only (`student.source_once`, models/causal.py; ~1.7x fewer
               query tokens per chunk; a different model: train it with the option)

Positions (issue 20): a query chunk sees the sinks at chunk positions 0..S-1 and its
window right before itself, so every chunk from S + W on sits at position S + W whatever
the stream length (`inference/kv_cache.py`). Training rollouts use exactly this geometry
(`train/rollout.py`), but a rollout of n chunks only meets what a stream meets at chunks
0..n-1: the demo's 3-chunk clips (S + W = 3) never reach the steady state (chunk 3) nor
the sink/window gap (chunk 4 on); `long_rollout` does.

LoopAug: `student.loopaug_fraction` of the training sequences (data.source=latents) are
palindromes in time, built on the encoded latent frames with their poses. Reversing
latent frames approximates encoding the reversed pixel video (the causal VAE's first
latent covers one pixel frame, the others four); the camera path is exact.

`launch/train.py --config configs/student.py:tiny --workdir W` runs the stages in
`config.stages` in order, each in W/<stage>; DMD starts from W/ode_init when that stage
ran (or `student.init_from`).

ODE pairs (`student.ode_pairs`, stage ode_pairs in W/ode_pairs, resumable by shard): the
teacher's trajectories (48 Euler steps, CFG `ode_cfg` = the teacher's sampler setting)
are computed once instead of inside every ode_init step. Demo cost on the 2-core CPU:
~9 s per example with CFG 5 (two passes; measured with random teacher weights while
another training job shared the CPU), so the demo's 384 pairs take ~1 h with guidance
and about half that at the demo's cfg 1; the ODE-init steps then run the
student alone (~3 s per step of batch 8 instead of ~1 min, so 1000 steps ~1 h). tiny and wan2_1_1_3b keep the online teacher (ode_pairs=0; at full size
one example's stored trajectory is ~50 MB).
"""

import ml_collections

from configs import common
from configs import teacher as teacher_config


def _optim(lr, *, b1=0.0, b2=0.999, clip=10.0, warmup=0):
  return ml_collections.ConfigDict(dict(
      lr=lr, warmup_steps=warmup, schedule="constant", total_steps=0, b1=b1, b2=b2,
      weight_decay=0.0, clip_norm=clip))


def _pick(size, tiny, demo, full):
  return {"tiny": tiny, "demo": demo, "wan2_1_1_3b": full}[size]


ABLATIONS = {
    "chunk1": lambda c: setattr(c.student, "chunk_pairs", 1),
    "no_loopaug": lambda c: setattr(c.student, "loopaug_fraction", 0.0),
    "forward_source": lambda c: setattr(c.data, "loopaug_variant", "forward_source"),
    "window": lambda c: (setattr(c.student, "window_chunks", 2),
                         setattr(c.student, "sink_chunks", 1)),
    "no_window": lambda c: (setattr(c.student, "window_chunks", 0),
                            setattr(c.student, "sink_chunks", 0)),
    "long_rollout": lambda c: _long_rollout(c),
    "ode_clean": lambda c: setattr(c.student, "ode_history", "clean"),
    "ode_independent": lambda c: setattr(c.student, "ode_history", "independent"),
    "source_once": lambda c: setattr(c.student, "source_once", True),
}


def _long_rollout(c):
  """Training clips of at least sink + window + 2 chunks (applied after the other ablations)."""
  s = c.student
  if int(s.window_chunks) > 0:
    need = (int(s.sink_chunks) + int(s.window_chunks) + 2) * int(s.chunk_pairs)
    c.data.latent_frames = max(int(c.data.latent_frames), need)


def get_config(arg=None):
  size, *ablations = (arg or "tiny").split(",")
  if size not in common.MODEL_SIZES:
    raise ValueError(f"unknown student size {size!r}; expected one of {sorted(common.MODEL_SIZES)}")
  c = ml_collections.ConfigDict()
  c.stage = "ode_init"                 # the stage `run.run` runs when `stages` is empty
  # ode_pairs does nothing when student.ode_pairs is 0 (ode_init then runs the teacher).
  c.stages = ("ode_pairs", "ode_init", "dmd")
  c.seed = 0
  c.teacher = teacher_config.get_config(size)
  c.model = c.teacher.model            # the same section object: one architecture
  c.mesh = c.teacher.mesh
  c.data = teacher_config.data_config(size)
  c.data.latent_frames = _pick(size, 6, 9, 21)   # a multiple of chunk_pairs (3 and 1)
  # LoopAug (item 6): the student's share drives the data pipeline, so the `no_loopaug`
  # ablation and `--config.student.loopaug_fraction=X` both reach the batches.
  loopaug = ml_collections.FieldReference(0.25)
  c.data.loopaug_fraction = loopaug

  c.student = ml_collections.ConfigDict(dict(
      chunk_pairs=3,                        # K frame pairs per chunk (ablate 1)
      timesteps=(1000.0, 750.0, 500.0, 250.0),  # few-step levels before the shift
      shift=5.0,
      sink_chunks=_pick(size, 0, 1, 0),     # first chunks kept forever in the window
      window_chunks=_pick(size, 0, 2, 0),   # rolling window W (0 = unlimited up to max_frames)
      max_frames=_pick(size, 12, 48, 48),   # cache length when window_chunks is 0
      # True: inside a chunk the (clean) source tokens attend to the chunk's sources and
      # the visible earlier chunks only, not to its noisy targets; their KV is then
      # computed once per chunk and each denoising step and the commit run the K P target
      # tokens only: (n + 2) K P query tokens per chunk of n steps instead of (n + 1) 2 K P
      # (1.67x fewer at 4 steps). The same option in ODE init, the rollouts and streaming
      # (models/causal.py). False: the chunk attends fully inside (the original student).
      source_once=False,
      teacher_ckpt="",                      # teacher workdir or converted dir ("" = seed init)
      init_from="",                         # DMD generator init (ODE-init workdir or dir)
      loopaug_fraction=loopaug,             # share of LoopAug sequences (= data.loopaug_fraction)
      # ODE init (CausVid): teacher Euler trajectories.
      ode_steps=_pick(size, 8, 48, 48),
      ode_shift=5.0,
      ode_cfg=c.teacher.sampler.cfg_scale,
      # What later chunks see in the ODE-init forward: "independent" (CausVid: the earlier
      # chunks' own noisy inputs, each at its random level) or "clean" (the earlier chunks
      # at sigma 0, the trajectory's x0, as a stream sees its commits; ~2x tokens).
      # Default "clean": it scored best on identity and presets in the 2026-12-07 pilot
      # (docs/pilots.md, ODE init only, 8 scenes: presets +0.27 dB [+0.02, +0.49] over
      # independent; all arms were still blurs, so recheck on models that re-render).
      ode_history="clean",
      # Stored ODE pairs (stage ode_pairs, see the module docstring): N > 0 = the teacher
      # trajectories of the first N training examples, computed once into WORKDIR/ode_pairs
      # and read by ode_init; 0 = the teacher runs inside every ode_init step.
      ode_pairs=_pick(size, 0, 384, 0),
      ode_pairs_shard=_pick(size, 8, 32, 64),   # examples per shard (a multiple of batch)
      ode_pairs_dir="",                     # "" = WORKDIR/ode_pairs (ode_init's sibling)
      # DMD.
      gen_every=_pick(size, 2, 5, 5),       # generator updated once per gen_every iterations
      real_cfg=_pick(size, 3.0, 1.0, 3.0),  # CFG of the real score (teacher); demo: the
                                            # teacher's own sampling setting (configs/teacher.py)
      dmd_sigma_min=0.02,                   # DMD noise level ~ shift(U[min, max])
      dmd_sigma_max=0.98,
      critic_shift=5.0,                     # critic flow-matching sigma shift
      ema_decay=0.99,
      ema_start=_pick(size, 1, 200, 200),
  ))
  c.ode_optim = _optim(_pick(size, 1e-3, 1e-4, 2e-6), b1=0.9, clip=1.0)
  c.gen_optim = _optim(_pick(size, 1e-4, 2e-5, 2e-6))
  c.critic_optim = _optim(_pick(size, 1e-4, 4e-6, 4e-7))
  c.stage_steps = ml_collections.ConfigDict(dict(
      ode_init=_pick(size, 4, 1000, 3000), dmd=_pick(size, 4, 1500, 3000)))
  c.train = ml_collections.ConfigDict(dict(
      batch_size=_pick(size, 8, 8, 64), num_steps=0,   # num_steps: set per stage by run.run
      log_every=_pick(size, 1, 10, 50), ckpt_every=_pick(size, 2, 100, 500), keep=3))
  for name in ablations:
    if name not in ABLATIONS:
      raise ValueError(f"unknown student ablation {name!r}; expected any of {sorted(ABLATIONS)}")
  # long_rollout sizes the clips from the final chunk / window settings: apply it last.
  for name in sorted(ablations, key=lambda a: a == "long_rollout"):
    ABLATIONS[name](c)
  return c

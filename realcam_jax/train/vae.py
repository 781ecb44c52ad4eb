"""Training the (demo) VAE on synthetic frames, evaluation, and export of a shippable checkpoint.

    python launch/train_vae.py --config configs/vae.py:demo --workdir runs/vae_demo \\
        --export checkpoints/vae_demo

Data: a pool of synthetic clips (`realcam_jax.data.synthetic.sample_clip`, the
source and every target camera of `data.pool_clips` scenes, rendered once and
cached as `WORKDIR/clip_pool_train.npy`); an example is a random window of
`data.train_frames` (1 + 4k) frames, a random `data.crop` x `data.crop` crop and a
random horizontal flip, as floats in [-1, 1]. Held-out clips use other seeds.

Objective (per element means; y = decode(z), z ~ posterior or its mean):
  l1_weight * |y - x| + l2_weight * (y - x)^2 + kl_weight * KL(q(z|x) || N(0, 1))
  + gdl_weight * |grad y - grad x|   (gradient-difference sharpness term over t, h, w)

The step is a pure function run by the shared loop (`train.loop`: Orbax resume,
progress bar, metrics.jsonl, NaN guard, preemption). `export` then measures the
per-channel latent mean/std on training clips (they become the checkpoint's
`model.latents_mean/std`, so the DiT sees normalised latents), the held-out PSNR
and the encode/decode speed, and writes a read-only `orbax_io` checkpoint.
"""

from __future__ import annotations

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from realcam_jax import sharding
from realcam_jax.atomic import atomic_file
from realcam_jax.models.vae import WanVAE, create_vae, sample_posterior
from realcam_jax.train import state as st
from realcam_jax.train.common import gradient_step, jit_train_step, make_optimizer

EVAL_SEED_OFFSET = 1_000_000  # held-out scenes: seeds data.seed + EVAL_SEED_OFFSET + i


# ----------------------------------------------------------------------------- data

def render_pool(data_cfg, split: str) -> np.ndarray:
  """u8[N, T, H, W, 3]: every camera of `pool_clips` (train) / `eval_clips` (eval) scenes."""
  from realcam_jax.data.synthetic import sample_clip
  from tqdm.auto import tqdm
  n = int(data_cfg.pool_clips if split == "train" else data_cfg.eval_clips)
  base = int(data_cfg.seed) + (0 if split == "train" else EVAL_SEED_OFFSET)
  videos = []
  for i in tqdm(range(n), desc=f"render {split} clips", dynamic_ncols=True):
    c = sample_clip(base + i, int(data_cfg.clip_frames), int(data_cfg.height),
                    int(data_cfg.width), int(data_cfg.target_cameras))
    videos.append(c["source_rgb"][None])
    videos.append(c["target_rgb"])
  return np.concatenate(videos)


def load_pool(data_cfg, split: str, cache_dir: str | None) -> np.ndarray:
  """`render_pool` cached as `cache_dir/clip_pool_{split}.npy` (re-rendered if the sizes change)."""
  if not cache_dir:
    return render_pool(data_cfg, split)
  path = os.path.join(cache_dir, f"clip_pool_{split}.npy")
  n = int(data_cfg.pool_clips if split == "train" else data_cfg.eval_clips)
  want = (n * (1 + int(data_cfg.target_cameras)), int(data_cfg.clip_frames),
          int(data_cfg.height), int(data_cfg.width), 3)
  if os.path.exists(path):
    pool = np.load(path, mmap_mode="r")
    if pool.shape == want:
      return pool
  pool = render_pool(data_cfg, split)
  atomic_file(path, lambda f: np.save(f, pool))
  return pool


def make_example(pool: np.ndarray, index: int, data_cfg) -> dict:
  """Deterministic per index: {'video': f32[train_frames, crop, crop, 3] in [-1, 1]}."""
  rng = np.random.default_rng([int(data_cfg.seed), int(index)])
  n, t, h, w = pool.shape[:4]
  tf, crop = int(data_cfg.train_frames), int(data_cfg.crop)
  v = int(rng.integers(n))
  t0 = int(rng.integers(t - tf + 1))
  y0, x0 = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
  clip = np.asarray(pool[v, t0:t0 + tf, y0:y0 + crop, x0:x0 + crop])
  if rng.random() < 0.5:
    clip = clip[:, :, ::-1]
  return {"video": clip.astype(np.float32) / 127.5 - 1.0}


def check_data_config(config) -> None:
  d, m = config.data, config.model
  s, r = 2 ** (len(m.dim_mult) - 1), 2 ** sum(bool(b) for b in m.temporal_downsample)
  problems = []
  if (d.train_frames - 1) % r or d.train_frames > d.clip_frames:
    problems.append(f"data.train_frames={d.train_frames} must be 1 + {r}*k and <= "
                    f"data.clip_frames={d.clip_frames}")
  if d.crop % s or d.crop > min(d.height, d.width):
    problems.append(f"data.crop={d.crop} must be a multiple of {s} and fit {d.height}x{d.width}")
  if (d.clip_frames - 1) % r or d.height % s or d.width % s:
    problems.append(f"clips of {d.clip_frames} frames at {d.height}x{d.width} must be 1 + {r}*k "
                    f"frames of multiples of {s} px (the evaluation encodes whole clips)")
  if problems:
    raise ValueError("VAE training config: " + "; ".join(problems))
  if d.train_frames < min(1 + 2 * r, d.clip_frames):
    logging.warning(
        "data.train_frames=%d trains no chunk whose causal cache comes from a previous full "
        "chunk: every chunk after the first will reconstruct badly; use >= %d",
        d.train_frames, 1 + 2 * r)


def make_iterator(config, pool: np.ndarray):
  """A checkpointable grain iterator of process-local {'video': f32[b, T, crop, crop, 3]}."""
  import grain
  n_proc, proc = jax.process_count(), jax.process_index()
  if config.train.batch_size % n_proc:
    raise ValueError(f"train.batch_size={config.train.batch_size} must be divisible by the "
                     f"number of processes ({n_proc})")
  b = config.train.batch_size // n_proc
  # Process p reads rows [p*b, (p+1)*b) of every global batch (the rows its devices
  # hold), so the global batch does not depend on the number of processes.
  row = lambda j: (j // b) * b * n_proc + proc * b + j % b  # noqa: E731
  ds = grain.MapDataset.range((1 << 30) // n_proc)
  ds = ds.map(lambda j: make_example(pool, row(int(j)), config.data))
  return iter(ds.batch(b).to_iter_dataset())


# ----------------------------------------------------------------------------- objective

def loss_fn(params, graphdef, config, batch: dict, key: jax.Array):
  """Reconstruction + KL (+ gradient difference). Returns (loss, metrics)."""
  vae = st.merge(graphdef, params)
  w = config.loss
  x = batch["video"]
  mu, logvar = vae.encode_moments(x)
  z = sample_posterior(mu, logvar, key) if w.sample_posterior else mu
  y = vae.decode_raw(z)
  err = y - x
  l1, l2 = jnp.mean(jnp.abs(err)), jnp.mean(jnp.square(err))
  kl = 0.5 * jnp.mean(jnp.square(mu) + jnp.exp(logvar) - 1.0 - logvar)
  gdl = sum(jnp.mean(jnp.abs(jnp.diff(err, axis=a))) for a in (1, 2, 3)) / 3.0
  loss = w.l1_weight * l1 + w.l2_weight * l2 + w.kl_weight * kl + w.gdl_weight * gdl
  mse = jnp.mean(jnp.square(jnp.clip(y, -1.0, 1.0) - x))
  psnr = 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-10))  # peak-to-peak 2 ([-1, 1])
  return loss, dict(loss=loss, l1=l1, l2=l2, kl=kl, gdl=gdl, psnr=psnr,
                    latent_std=jnp.std(mu), logvar=jnp.mean(logvar))


def make_train_step(graphdef, config, optimizer: optax.GradientTransformation):
  """step(state, batch) -> (state, metrics); pure, jit it with shardings and donation."""
  root = jax.random.key(config.seed)

  def step(state: st.TrainState, batch: dict):
    key = jax.random.fold_in(root, state.step)
    return gradient_step(loss_fn, state, optimizer, graphdef, config, batch, key)

  return step


def compile_step(graphdef, config, optimizer, state_shardings, mesh, batch_example: dict):
  """The jitted step (explicit shardings, donated state; see `common.jit_train_step`)."""
  return jit_train_step(make_train_step(graphdef, config, optimizer), state_shardings, mesh,
                        batch_example)


def init(config, mesh):
  """(graphdef, state, state_shardings, optimizer); the small VAE is replicated (data parallel)."""
  optimizer = make_optimizer(config.optim)
  graphdef, params = st.split_model(create_vae(config.model, seed=config.seed))
  state = st.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                        opt_state=optimizer.init(params))
  rep = sharding.replicated(mesh)
  # A sharding per Variable (not per Variable's inner leaf), as `sharding.state_shardings`.
  state_sh = jax.tree.map(lambda _: rep, state, is_leaf=lambda x: isinstance(x, nnx.Variable))
  return graphdef, jax.device_put(state, state_sh), state_sh, optimizer


def train(config, workdir: str, num_steps: int | None = None):
  """Runs the shared loop on the clip pool; returns (graphdef, state, info)."""
  from realcam_jax.train import loop
  check_data_config(config)
  mesh = sharding.make_mesh(config.mesh)
  dp = mesh.shape["data"] * mesh.shape["fsdp"]
  if config.train.batch_size % dp:
    raise ValueError(f"train.batch_size={config.train.batch_size} must be divisible by the "
                     f"{dp} data-parallel devices of the mesh {dict(mesh.shape)}")
  pool = load_pool(config.data, "train", config.data.cache_dir or workdir)
  return loop.train(config, workdir, init=init, compile=compile_step,
                    data_iter=make_iterator(config, pool), num_steps=num_steps, desc="vae")


# ----------------------------------------------------------------------------- evaluation / export

def _timed(fn, *args, repeats: int = 2):
  jax.block_until_ready(fn(*args))                     # compile
  t0 = time.perf_counter()
  for _ in range(repeats):
    out = jax.block_until_ready(fn(*args))
  return out, (time.perf_counter() - t0) / repeats


def evaluate(vae: WanVAE, videos: np.ndarray, *, stats_videos: np.ndarray | None = None) -> dict:
  """PSNR of encode -> decode (posterior mean) on u8[N, T, H, W, 3] clips, speed, latent stats.

  Returns psnr_db (mean over clips of per-clip PSNR, [0, 255] peak), psnr_db_min,
  psnr_db_per_frame (mean over clips; later chunks run on the steady-state causal cache),
  encode_fps / decode_fps (frames per second, batch 1, after compile), and, when
  `stats_videos` is given, latents_mean / latents_std (per channel of the raw mean).
  """
  graphdef, state = nnx.split(vae)
  enc = jax.jit(lambda s, x: nnx.merge(graphdef, s).encode_moments(x)[0])
  dec = jax.jit(lambda s, z: nnx.merge(graphdef, s).decode_raw(z))
  psnrs, per_frame, t_enc, t_dec = [], [], [], []
  for i, v in enumerate(videos):
    x = jnp.asarray(v[None], jnp.float32) / 127.5 - 1.0
    if i == 0:
      mu, te = _timed(enc, state, x)
      y, td = _timed(dec, state, mu)
      t_enc.append(te)
      t_dec.append(td)
    else:
      mu = enc(state, x)
      y = dec(state, mu)
    y8 = np.round((np.clip(np.asarray(y[0]), -1, 1) + 1) * 127.5)
    err = (y8 - np.asarray(v, np.float64)) ** 2
    psnrs.append(10 * np.log10(255.0 ** 2 / max(err.mean(), 1e-10)))
    per_frame.append(10 * np.log10(255.0 ** 2 / np.maximum(err.reshape(len(v), -1).mean(1),
                                                             1e-10)))
  frames = videos.shape[1]
  out = dict(psnr_db=float(np.mean(psnrs)), psnr_db_min=float(np.min(psnrs)),
             psnr_db_per_frame=[round(float(x), 2) for x in np.mean(per_frame, 0)],
             num_clips=len(videos), encode_fps=frames / t_enc[0], decode_fps=frames / t_dec[0])
  if stats_videos is not None:
    mus = [np.asarray(enc(state, jnp.asarray(v[None], jnp.float32) / 127.5 - 1.0))
           for v in stats_videos]
    flat = np.concatenate([m.reshape(-1, m.shape[-1]) for m in mus])
    out["latents_mean"] = [round(float(a), 4) for a in flat.mean(0)]
    out["latents_std"] = [round(float(a), 4) for a in np.maximum(flat.std(0), 1e-3)]
  return out


def export(config, workdir: str, out_dir: str, *, force: bool = False) -> dict:
  """Latest training checkpoint -> evaluated, normalised, read-only `orbax_io` checkpoint."""
  from realcam_jax.ckpt import orbax_io
  from realcam_jax.ckpt.manager import Checkpointer, abstract_like
  orbax_io.check_out_dir(out_dir, force)
  check_data_config(config)
  mesh = sharding.make_mesh(config.mesh)
  graphdef, state, state_sh, _ = init(config, mesh)
  ckpt = Checkpointer(os.path.join(workdir, "ckpt"), with_data=False)
  try:
    state, _, step = ckpt.restore(abstract_like(state, state_sh))
  finally:
    ckpt.close()
  vae = st.merge(graphdef, state.params)
  train_pool = load_pool(config.data, "train", config.data.cache_dir or workdir)
  eval_pool = load_pool(config.data, "eval", config.data.cache_dir or workdir)
  n_stats = min(len(train_pool), int(config.data.stats_clips))
  report = evaluate(vae, np.asarray(eval_pool), stats_videos=np.asarray(train_pool[:n_stats]))
  report["step"] = int(step)
  out_cfg = config.copy_and_resolve_references()
  out_cfg.model.latents_mean = tuple(report["latents_mean"])
  out_cfg.model.latents_std = tuple(report["latents_std"])
  _, params = st.split_model(vae)
  orbax_io.save_state(out_dir, jax.device_get(params), out_cfg, force=force,
                      meta=dict(kind="vae", trained_steps=int(step),
                                workdir=os.path.abspath(workdir),
                                **{k: v for k, v in report.items()
                                   if k not in ("latents_mean", "latents_std")}))
  return report

"""Denoising probe of a teacher: x0 error per noise level, and of its samples, against its anchor.

For latent clips, each target window is noised to sigma, the teacher predicts its
velocity once, and the implied x0 = x_t - sigma * v is compared with the clean target
latents; beside it, the error of the model's anchor: the source latents warped to the
target camera for `model.prediction = warped_source`, the paired source latents
(copying the source) otherwise. A model that uses its source should beat the anchor at
every sigma, and by far at small sigma, where it also sees the noisy target.

The one-pass x0 at sigma 1 is the model's posterior mean. A sample (`--sample-steps N`:
the teacher sampler from noise, as `realcam eval` generates) of a perfect model has
twice the posterior variance as its expected squared error, so a sampled error near
2x the sigma-1 error says the sampler is sound and the distribution is still broad
(fidelity then needs a model that knows more, not another sampler). Every row is also
given on the quarter of windows whose anchor is best (the cameras nearest the source).
One forward per level and batch (and one sample per batch): minutes on the CPU.

Run: `python launch/probe_denoise.py --teacher runs/p4W --data runs/lat_p4 --split train
--config configs/teacher.py:demo,vae4x,warped_source --config.data.latent_frames=3
[--sample-steps 20]`.
"""

import argparse
import json

import numpy as np

SIGMAS = (0.02, 0.1, 0.25, 0.5, 0.75, 1.0)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/teacher.py:demo")
  parser.add_argument("--teacher", required=True, help="teacher workdir or checkpoint")
  parser.add_argument("--data", required=True, help="latent dataset (realcam data encode)")
  parser.add_argument("--split", default="test")
  parser.add_argument("--batches", type=int, default=1, help="batches of train.batch_size")
  parser.add_argument("--sample-steps", type=int, default=0,
                      help="also sample each window with this many Euler steps (0: no)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json", default="", help="also write the table here")
  args, overrides = parser.parse_known_args()

  import jax
  import jax.numpy as jnp

  from realcam_jax.config import get_config
  from realcam_jax.data import latents
  from realcam_jax.diffusion import flow_matching as fm
  from realcam_jax.inference import teacher_sampler
  from realcam_jax.inference.load import load_teacher
  from realcam_jax.models import layout
  from realcam_jax.train import state as st
  from realcam_jax.train import rollout, teacher

  config = get_config(args.config, [f"--config.data.dataset_dir={args.data}"] + overrides)
  config, graphdef, params = load_teacher(args.teacher, config)
  sampler_cfg = config.sampler

  def anchor_of(batch):      # what the model starts from: its anchor, else the source
    anchor = rollout.conditions(config, batch)[3]
    return batch["source_latents"] if anchor is None else anchor

  def err(a, x0):
    return jnp.mean(jnp.square(a.astype(jnp.float32) - x0), axis=(1, 2, 3, 4))

  @jax.jit
  def x0_error(params, batch, sigma, key):
    model = st.merge(graphdef, params)
    x0 = batch["target_latents"].astype(jnp.float32)
    b, f = x0.shape[:2]
    s = jnp.full((b, f), sigma, jnp.float32)
    x_t = fm.add_noise(x0, jax.random.normal(key, x0.shape), s)
    v = layout.split(teacher.model_forward(model, config, batch, x_t, s), config.model.layout)[1]
    return err(x_t - sigma * v.astype(jnp.float32), x0), err(anchor_of(batch), x0)

  @jax.jit
  def sample_error(params, batch, key):
    model = st.merge(graphdef, params)
    src, cam, text, anchor = rollout.conditions(config, batch)
    x = teacher_sampler.sample(model, src, cam, text, key,
                               steps=args.sample_steps, shift=sampler_cfg.shift,
                               cfg_scale=sampler_cfg.cfg_scale,
                               uncond_text=batch.get("text_uncond"), anchor=anchor)
    return err(x, batch["target_latents"].astype(jnp.float32))

  it = latents.make_iterator(config, split=args.split)
  levels = list(SIGMAS) + (["sample"] if args.sample_steps else [])
  rows = {s: [] for s in levels}
  anchor_err = []
  key = jax.random.key(args.seed)
  for _ in range(args.batches):
    batch = jax.tree.map(jnp.asarray, next(it))
    for sigma in SIGMAS:
      key, k = jax.random.split(key)
      m, a = x0_error(params, batch, sigma, k)
      rows[sigma].extend(np.asarray(m).tolist())
    anchor_err.extend(np.asarray(a).tolist())
    if args.sample_steps:
      key, k = jax.random.split(key)
      rows["sample"].extend(np.asarray(sample_error(params, batch, k)).tolist())
  anchor_err = np.asarray(anchor_err)
  near = anchor_err <= np.quantile(anchor_err, 0.25)
  what = "warped source" if config.model.get("prediction") == "warped_source" else "copy source"
  print(f"teacher {args.teacher}, {args.split} split of {args.data}, {len(anchor_err)} windows "
        f"({near.sum()} nearest): latent x0 MSE, mean over windows; anchor = {what}")
  print("| sigma | model | anchor | model / anchor | model, nearest | anchor, nearest |")
  print("|---:|---:|---:|---:|---:|---:|")
  table = []
  for level in levels:
    m = np.asarray(rows[level])
    r = dict(sigma=level, model=m.mean(), anchor=anchor_err.mean(), model_nearest=m[near].mean(),
             anchor_nearest=anchor_err[near].mean())
    table.append(r)
    name = f"sampled ({args.sample_steps} steps)" if level == "sample" else f"{level:g}"
    print(f"| {name} | {r['model']:.4f} | {r['anchor']:.4f} | {r['model'] / r['anchor']:.3f} | "
          f"{r['model_nearest']:.4f} | {r['anchor_nearest']:.4f} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(dict(teacher=args.teacher, data=args.data, split=args.split,
                     sample_steps=args.sample_steps, rows=table), f, indent=1, default=float)


if __name__ == "__main__":
  main()

"""One-pass denoising probe of a teacher: x0 error per noise level against copying the source.

For held-out latent clips, each target window is noised to sigma, the teacher predicts
its velocity once, and the implied x0 = x_t - sigma * v is compared with the clean
target latents; beside it, the same error for the paired source latents (copying the
source, in latent space). A model that uses its source should beat the copy at every
sigma, and by far at small sigma, where it also sees the noisy target. One forward per
level and batch: minutes on the CPU, so a pilot can be read long before a sampled eval.

Run: `python launch/probe_denoise.py --teacher runs/pilotC2 --data runs/lat_p8_test
[--config configs/teacher.py:demo,source_residual] [--split test]`.
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
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json", default="", help="also write the table here")
  args = parser.parse_args()

  import jax
  import jax.numpy as jnp

  from realcam_jax.config import get_config
  from realcam_jax.diffusion import flow_matching as fm
  from realcam_jax.inference.load import load_teacher
  from realcam_jax.models import layout
  from realcam_jax.data import latents
  from realcam_jax.train import state as st
  from realcam_jax.train import teacher

  config = get_config(args.config, [f"--config.data.dataset_dir={args.data}"])
  config, graphdef, params = load_teacher(args.teacher, config)

  @jax.jit
  def x0_error(params, batch, sigma, key):
    model = st.merge(graphdef, params)
    x0 = batch["target_latents"].astype(jnp.float32)
    b, f = x0.shape[:2]
    s = jnp.full((b, f), sigma, jnp.float32)
    x_t = fm.add_noise(x0, jax.random.normal(key, x0.shape), s)
    v = layout.split(teacher.model_forward(model, config, batch, x_t, s), config.model.layout)[1]
    pred = x_t - sigma * v.astype(jnp.float32)
    err = lambda a: jnp.mean(jnp.square(a - x0), axis=(1, 2, 3, 4))  # noqa: E731
    return err(pred), err(batch["source_latents"].astype(jnp.float32))

  it = latents.make_iterator(config, split=args.split)
  rows = {s: ([], []) for s in SIGMAS}
  key = jax.random.key(args.seed)
  for _ in range(args.batches):
    batch = jax.tree.map(jnp.asarray, next(it))
    for sigma in SIGMAS:
      key, k = jax.random.split(key)
      m, c = x0_error(params, batch, sigma, k)
      rows[sigma][0].extend(np.asarray(m).tolist())
      rows[sigma][1].extend(np.asarray(c).tolist())
  print(f"teacher {args.teacher}, {args.split} split of {args.data}, "
        f"{len(rows[SIGMAS[0]][0])} windows: latent x0 MSE (mean over windows)")
  print("| sigma | model | copy source | model / copy |")
  print("|---:|---:|---:|---:|")
  table = []
  for sigma in SIGMAS:
    m, c = np.mean(rows[sigma][0]), np.mean(rows[sigma][1])
    table.append(dict(sigma=sigma, model=m, copy_source=c))
    print(f"| {sigma:g} | {m:.4f} | {c:.4f} | {m / c:.3f} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(dict(teacher=args.teacher, data=args.data, split=args.split, rows=table), f,
                indent=1)


if __name__ == "__main__":
  main()

"""Compares sharpness definitions on the demo test scenes (docs/metrics.md, "Sharpness ratio").

For each definition: the ratio prediction / truth of the references built from the truth
(the demo VAE round trip, Gaussian blurs, the row mean) and of copying the source, on the
whole frame and on the object region. A useful definition puts the VAE round trip well
above the blurs and the row mean. Run: `python launch/probe_sharpness.py [--scenes 4]`.
"""

import argparse

import numpy as np


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--scenes", type=int, default=4)
  parser.add_argument("--vae", default="checkpoints/vae_demo")
  args = parser.parse_args()

  from realcam_jax.config import get_config
  from realcam_jax.eval import cases as C
  from realcam_jax.eval import fidelity, runner, systems
  from realcam_jax.inference.load import load_vae_model

  def lap_energy(v, m):                 # the definition before 2026-12-07
    x = np.asarray(v, np.float64) / 255.0
    c = x[..., 1:-1, 1:-1, :]
    lap = x[..., :-2, 1:-1, :] + x[..., 2:, 1:-1, :] + x[..., 1:-1, :-2, :] + x[..., 1:-1, 2:, :]
    return float(((lap - 4 * c) ** 2).mean(-1)[m[..., 1:-1, 1:-1]].mean())

  defs = {
      "squared Laplacian": lap_energy,
      "gradient, no prefilter": lambda v, m: fidelity.edge_strength(v, m, prefilter_px=0),
      "gradient, 1 px prefilter": lambda v, m: fidelity.edge_strength(v, m),
  }
  config = get_config("student:demo", [])
  vae = load_vae_model(args.vae, config)
  settings = runner.scene_settings(config, vae)
  lat = C.latent_lengths(settings, ("short",))
  roundtrip = systems.vae_roundtrip(vae)
  rows: dict = {}
  for seed in C.scene_seeds("test", args.scenes, settings.seed_offset):
    for case in C.make_cases(seed, settings, ["clip", "pan_right"], lat):
      gt = case.target
      cands = {"vae_roundtrip": roundtrip(gt), "blur_2px": fidelity.gaussian_blur(gt, 2),
               "blur_4px": fidelity.gaussian_blur(gt, 4), "row_mean": fidelity.row_mean(gt),
               "copy_source": case.source}
      for region, m in (("all", np.ones(gt.shape[:3], bool)), ("object", case.object_mask)):
        for name, pred in cands.items():
          for d, f in defs.items():
            rows.setdefault((region, name, d), []).append(f(pred, m) / f(gt, m))
  print(f"{args.scenes} test scenes x (clip, pan_right), ratio prediction / truth "
        "(whole frame / object region)")
  print(f"| image | {' | '.join(defs)} |")
  print("|---|" + "---:|" * len(defs))
  for name in ("vae_roundtrip", "blur_2px", "blur_4px", "row_mean", "copy_source"):
    cells = [f"{np.mean(rows[('all', name, d)]):.3f} / {np.mean(rows[('object', name, d)]):.3f}"
             for d in defs]
    print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
  main()

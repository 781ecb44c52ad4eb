"""Pilot: how well does a plane-homography warp of the source score, vs copy-source?"""
import json, sys
import numpy as np
from realcam_jax.config import get_config
from realcam_jax.eval import runner, systems as S
from realcam_jax.camera import warp, interp, pose as P
from realcam_jax.inference.load import load_vae_model

depths = [float(d) for d in sys.argv[1].split(",")]
num = int(sys.argv[2]); cases = sys.argv[3].split(","); out = sys.argv[4]
config = get_config("configs/teacher.py:demo")
vae = load_vae_model("checkpoints/vae_demo", config)
settings = runner.scene_settings(config, vae)
r = settings.temporal_factor

def warp_system(depth):
  def gen(source, poses, K, seed, source_poses=None):
    T = source.shape[0]; F = poses.shape[0]
    keys = np.arange(F) * r
    tq = np.arange(T)
    tgt = interp.interpolate_poses(np.asarray(poses, np.float64), keys, tq)
    src = interp.interpolate_poses(np.asarray(source_poses, np.float64), keys, tq)
    rel = P.invert_pose(src) @ tgt
    w, valid = warp.plane_warp(source, rel, K, depth)
    return np.clip(np.round(np.asarray(w)), 0, 255).astype(np.uint8)
  return S.System(f"warp_d{depth:g}", gen)

import jax, jax.numpy as jnp
from flax import nnx
from realcam_jax.camera.intrinsics import scale_intrinsics
def latent_warp_system(depth, vae):
  graphdef, state = nnx.split(vae)
  sf = vae.spatial_factor
  @jax.jit
  def run(state, video, rel, k_lat):
    m = nnx.merge(graphdef, state)
    lat = m.encode(S._to_unit(video)[None]).astype(jnp.float32)[0]      # [F,h,w,C]
    w, _ = warp.plane_warp(lat, rel, k_lat, depth)
    return S._to_uint8(m.decode(w[None])[0])
  def gen(source, poses, K, seed, source_poses=None):
    rel = P.invert_pose(np.asarray(source_poses, np.float64)) @ np.asarray(poses, np.float64)
    k_lat = scale_intrinsics(np.asarray(K, np.float64), 1.0 / sf)
    return np.asarray(run(state, jnp.asarray(source), jnp.asarray(rel, jnp.float32), jnp.asarray(k_lat, jnp.float32)))
  return S.System(f"latwarp_d{depth:g}", gen)
systems = {"copy_source": S.copy_source()}
if len(sys.argv) > 5:
  vae = load_vae_model(sys.argv[5], config)
  settings = runner.scene_settings(config if vae.spatial_factor == 8 else get_config("configs/teacher.py:demo,vae4x"), vae)
  rt = S.vae_roundtrip(vae)
  for d in depths:
    if "lat" in sys.argv[6:]:
      systems[f"latwarp_d{d:g}"] = latent_warp_system(d, vae)
    pw = warp_system(d).generate
    systems[f"encwarp_d{d:g}"] = S.System(f"encwarp_d{d:g}", lambda *a, pw=pw, **k: rt(pw(*a, **k)))
for d in depths:
  systems[f"warp_d{d:g}"] = warp_system(d)
refs = runner.default_references()
refs = {"blur_4px": refs["blur_4px"]}
if len(sys.argv) > 5:
  refs["vae_roundtrip"] = S.vae_roundtrip(vae)
res = runner.run_eval(systems, settings, num_scenes=num, cases=cases, lengths=["short"],
                      references=refs, bootstrap_samples=500)
from realcam_jax.eval import report
json.dump(report.to_jsonable(res), open(out, "w"), indent=1)
for row, byc in res["results"].items():
  for c, byl in byc.items():
    a = byl["short"]
    def g(k):
      v = a.get(k); 
      return v
    print(f"{row:14s} {c:14s} psnr {g('psnr'):6.2f} obj {g('psnr_object'):6.2f} sharp {g('sharpness_object'):5.2f}")

"""A small fake MultiCamVideo tree in the exact layout, rendered by the synthetic world.

  train/f24_aperture5/sceneN/videos/camNN.mp4, .../cameras/camera_extrinsics.json,
  train/metadata.csv (file_name relative to train/, text)

Poses go into the camera JSON through `opencv_to_unreal` (the inverse of the import
transform), so an import must read back exactly the rendered poses.
"""

import csv
import os

import numpy as np

from realcam_jax.camera.external import write_recammaster
from realcam_jax.camera.track import CameraTrack
from realcam_jax.data import synthetic
from realcam_jax.inference.video_io import write_video

FOCAL = "f24_aperture5"


def make_tree(root, *, scenes=2, cameras=3, frames=9, height=48, width=64, seed=0):
  """Writes the tree under `root`; returns {scene rel: {cam number: c2w f32[T,4,4]}}."""
  poses, rows = {}, []
  for i in range(scenes):
    rel = f"{FOCAL}/scene{i + 1}"
    folder = os.path.join(root, "train", rel)
    os.makedirs(os.path.join(folder, "videos"))
    os.makedirs(os.path.join(folder, "cameras"))
    clip = synthetic.sample_clip(seed + i, frames, height, width, cameras - 1)
    rgb = np.concatenate([clip["source_rgb"][None], clip["target_rgb"]])
    c2w = np.concatenate([clip["source_c2w"][None], clip["target_c2w"]])
    poses[rel] = {}
    for c in range(cameras):
      write_video(os.path.join(folder, "videos", f"cam{c + 1:02d}.mp4"), rgb[c], fps=15.0)
      poses[rel][c + 1] = c2w[c]
      rows.append((f"{rel}/videos/cam{c + 1:02d}.mp4", f"scene {i + 1} seen by camera {c + 1}"))
    write_recammaster(os.path.join(folder, "cameras", "camera_extrinsics.json"),
                      {f"cam{c + 1:02d}": CameraTrack(c2w[c].astype(np.float64))
                       for c in range(cameras)})
  with open(os.path.join(root, "train", "metadata.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["file_name", "text"])
    w.writerows(rows)
  return poses

"""Numbers and a picture of a camera path (for `realcam camera show`)."""

from __future__ import annotations

import os

import numpy as np

from realcam_jax.atomic import atomic_file
from realcam_jax.camera.pose import relative_to, rotation_angle


def path_summary(poses) -> dict:
  """Summary of a `[T, 4, 4]` camera-to-world path (numpy).

  Returns:
    dict with `frames`, `rotation_last_deg` (last frame w.r.t. the first),
    `rotation_max_deg` (largest over the path, w.r.t. the first),
    `path_length_m` (sum of centre steps), `start_end_distance_m` and
    `start_end_rotation_deg` (loop closure), `displacement_first_cam`
    (last centre in the first camera's axes, metres).
  """
  poses = np.asarray(poses, dtype=np.float64)
  rel = relative_to(poses, poses[0])
  angles = np.rad2deg(rotation_angle(rel[:, :3, :3]))
  centres = poses[:, :3, 3]
  steps = np.linalg.norm(np.diff(centres, axis=0), axis=-1)
  return {
      "frames": int(len(poses)),
      "rotation_last_deg": float(angles[-1]),
      "rotation_max_deg": float(angles.max()),
      "path_length_m": float(steps.sum()),
      "start_end_distance_m": float(np.linalg.norm(centres[-1] - centres[0])),
      "start_end_rotation_deg": float(angles[-1]),
      "displacement_first_cam": rel[-1, :3, 3].tolist(),
  }


def format_summary(name: str, summary: dict) -> str:
  """Human-readable lines for `path_summary` output."""
  dx, dy, dz = summary["displacement_first_cam"]
  return "\n".join([
      f"{name}:",
      f"  frames                 {summary['frames']}",
      f"  rotation (last frame)  {summary['rotation_last_deg']:.3f} deg",
      f"  rotation (max)         {summary['rotation_max_deg']:.3f} deg",
      f"  path length            {summary['path_length_m']:.4f} m",
      f"  start-end distance     {summary['start_end_distance_m']:.4f} m",
      f"  end offset (x, y, z)   ({dx:+.4f}, {dy:+.4f}, {dz:+.4f}) m in the first camera's axes "
      "(x right, y down, z forward)",
  ])


def _to_plot(p):
  """Our world (x right, y down, z forward) -> plot axes (x right, z forward, up)."""
  p = np.asarray(p)
  return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def plot_paths(paths: dict, out_path: str, num_frusta: int = 8, title: str | None = None,
               fov_deg: float = 60.0, aspect: float = 16 / 9):
  """Writes a 3D PNG of camera paths with frusta and camera axes.

  Args:
    paths: `{name: [T, 4, 4] camera-to-world}` (all in one world frame).
    out_path: PNG file to write.
    num_frusta: frusta drawn per path (evenly spaced, first and last included).
    title: figure title.
    fov_deg, aspect: frustum shape.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  centres = np.concatenate([np.asarray(p)[:, :3, 3] for p in paths.values()])
  span = float(np.ptp(centres, axis=0).max()) if len(centres) > 1 else 0.0
  size = max(span, 0.5) * 0.08
  half_w = np.tan(np.deg2rad(fov_deg) / 2) * size
  half_h = half_w / aspect
  corners = np.array([[-half_w, -half_h, size], [half_w, -half_h, size],
                      [half_w, half_h, size], [-half_w, half_h, size]])
  fig = plt.figure(figsize=(7, 6))
  ax = fig.add_subplot(projection="3d")
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for c, (name, poses) in enumerate(paths.items()):
    poses = np.asarray(poses)
    col = colors[c % len(colors)]
    line = _to_plot(poses[:, :3, 3])
    ax.plot(line[:, 0], line[:, 1], line[:, 2], color=col, label=name)
    ax.scatter(*line[0], color=col, marker="o", s=20)
    for i in np.unique(np.linspace(0, len(poses) - 1, max(num_frusta, 1)).round().astype(int)):
      R, t = poses[i, :3, :3], poses[i, :3, 3]
      world = _to_plot(corners @ R.T + t)
      o = _to_plot(t)
      for k in range(4):
        ax.plot(*zip(o, world[k]), color=col, lw=0.6)
        ax.plot(*zip(world[k], world[(k + 1) % 4]), color=col, lw=0.6)
      for axis, axis_col in zip(range(3), ("r", "g", "b")):
        tip = _to_plot(t + R[:, axis] * size * 0.7)
        ax.plot(*zip(o, tip), color=axis_col, lw=1.0)
  lo, hi = centres.min(axis=0) - 2 * size, centres.max(axis=0) + 2 * size
  mid, rad = (lo + hi) / 2, max((hi - lo).max() / 2, 0.1)
  mid = _to_plot(mid)
  ax.set_xlim(mid[0] - rad, mid[0] + rad)
  ax.set_ylim(mid[1] - rad, mid[1] + rad)
  ax.set_zlim(mid[2] - rad, mid[2] + rad)
  ax.set_xlabel("x (right) [m]")
  ax.set_ylabel("z (forward) [m]")
  ax.set_zlabel("-y (up) [m]")
  if title:
    ax.set_title(title)
  if len(paths) <= 12:
    ax.legend(fontsize=7, loc="upper left")
  fig.tight_layout()
  ext = os.path.splitext(out_path)[1][1:].lower() or "png"
  # The folder is created; the file appears complete or not at all.
  atomic_file(out_path, lambda f: fig.savefig(f, dpi=110, format=ext))
  plt.close(fig)

"""A tiny exact ray caster for camera-adherence tests (no dependency on the data package).

The scene is the inside of an axis-aligned box (OpenCV world axes: x right, y down, z forward)
whose six walls carry different random textures (multi-scale noise plus coloured rectangles),
so SIFT finds plenty of distinctive features and the geometry is not planar.
"""

import cv2
import numpy as np

BOX_LO = np.array([-6.0, -4.0, -4.0])
BOX_HI = np.array([6.0, 2.0, 10.0])
TEX = 512


def _texture(rng: np.random.Generator) -> np.ndarray:
  """`[TEX, TEX, 3]` float32 texture in [0, 1]."""
  tex = np.zeros((TEX, TEX, 3), np.float32)
  for cells, amp in ((8, 0.5), (32, 0.35), (128, 0.25)):
    noise = rng.random((cells, cells, 3)).astype(np.float32)
    tex += amp * cv2.resize(noise, (TEX, TEX), interpolation=cv2.INTER_CUBIC)
  tex = (tex - tex.min()) / (tex.max() - tex.min())
  for _ in range(120):
    x0, y0 = rng.integers(0, TEX - 8, size=2)
    w, h = rng.integers(4, 24, size=2)
    tex[y0:y0 + h, x0:x0 + w] = rng.random(3)
  return tex


def make_box_scene(seed: int = 0) -> list[np.ndarray]:
  """One texture per wall: order (-x, +x, -y, +y, -z, +z)."""
  rng = np.random.default_rng(seed)
  return [_texture(rng) for _ in range(6)]


def _bilinear(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  u = np.clip(u, 0, TEX - 1.001)
  v = np.clip(v, 0, TEX - 1.001)
  u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
  fu, fv = (u - u0)[:, None], (v - v0)[:, None]
  return ((1 - fu) * (1 - fv) * tex[v0, u0] + fu * (1 - fv) * tex[v0, u0 + 1]
          + (1 - fu) * fv * tex[v0 + 1, u0] + fu * fv * tex[v0 + 1, u0 + 1])


def render_box(textures, c2w: np.ndarray, k: np.ndarray, height: int, width: int) -> np.ndarray:
  """Renders `[T, H, W, 3]` uint8 frames for poses `c2w[T, 4, 4]`.

  Pixel (row i, column j) is the ray through (j + 0.5, i + 0.5), the project's convention."""
  jj, ii = np.meshgrid(np.arange(width, dtype=np.float64) + 0.5,
                       np.arange(height, dtype=np.float64) + 0.5)
  pix = np.stack([jj.ravel(), ii.ravel(), np.ones(jj.size)], axis=0)
  cam_dirs = np.linalg.inv(k) @ pix  # [3, HW]
  frames = []
  for pose in np.asarray(c2w, np.float64):
    d = (pose[:3, :3] @ cam_dirs).T  # [HW, 3]
    o = pose[:3, 3]
    best_s = np.full(d.shape[0], np.inf)
    best_wall = np.full(d.shape[0], -1)
    for axis in range(3):
      for side, bound in enumerate((BOX_LO[axis], BOX_HI[axis])):
        with np.errstate(divide="ignore", invalid="ignore"):
          s = (bound - o[axis]) / d[:, axis]
        hit = (s > 1e-9) & (s < best_s)
        best_s[hit] = s[hit]
        best_wall[hit] = 2 * axis + side
    p = o + best_s[:, None] * d
    rgb = np.zeros((d.shape[0], 3))
    for wall, tex in enumerate(textures):
      sel = best_wall == wall
      a, b = [ax for ax in range(3) if ax != wall // 2]
      u = (p[sel, a] - BOX_LO[a]) / (BOX_HI[a] - BOX_LO[a]) * (TEX - 1)
      v = (p[sel, b] - BOX_LO[b]) / (BOX_HI[b] - BOX_LO[b]) * (TEX - 1)
      rgb[sel] = _bilinear(tex, u, v)
    frames.append(np.round(rgb.reshape(height, width, 3) * 255).astype(np.uint8))
  return np.stack(frames)


def rot_y(deg: float) -> np.ndarray:
  """Rotation about the y (down) axis; positive turns the z axis toward +x."""
  a = np.radians(deg)
  return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def rot_x(deg: float) -> np.ndarray:
  a = np.radians(deg)
  return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def trajectory(num_frames: int, step_xyz=(0.15, 0.0, 0.1), yaw_deg: float = 2.0,
               pitch_deg: float = 0.0) -> np.ndarray:
  """`[T, 4, 4]` c2w: constant translation and rotation per frame from the origin."""
  poses = np.tile(np.eye(4), (num_frames, 1, 1))
  for t in range(num_frames):
    poses[t, :3, :3] = rot_y(yaw_deg * t) @ rot_x(pitch_deg * t)
    poses[t, :3, 3] = np.asarray(step_xyz) * t
  return poses


def intrinsics(height: int, width: int, fov_deg: float = 60.0) -> np.ndarray:
  f = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
  return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])

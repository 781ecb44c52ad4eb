"""Camera geometry for evaluation: pose checks, angles, loop pairs, refinement.

Conventions: camera-to-world 4x4 poses with OpenCV axes (x right, y down,
z forward); the relative pose of frame j w.r.t. frame i maps camera-i
coordinates to camera-j coordinates, `X_j = R X_i + t`, i.e.
`[R | t] = inv(c2w_j) @ c2w_i` (what `cv2.recoverPose` returns, t up to
scale). All float64 NumPy.
"""

from __future__ import annotations

import numpy as np


def check_poses(c2w, name: str = "c2w", atol: float = 1e-3) -> np.ndarray:
  """Validates camera-to-world poses `[T, 4, 4]`; returns them as float64."""
  p = np.asarray(c2w, dtype=np.float64)
  if p.ndim != 3 or p.shape[1:] != (4, 4) or p.shape[0] == 0:
    raise ValueError(f"{name} must be [T, 4, 4] camera-to-world matrices, got "
                     f"shape {p.shape}")
  if not np.all(np.isfinite(p)):
    raise ValueError(f"{name} contains NaN or inf")
  bottom = np.abs(p[:, 3] - np.array([0, 0, 0, 1.0])).max(axis=1)
  rot = p[:, :3, :3]
  ortho = np.abs(rot @ np.swapaxes(rot, 1, 2) - np.eye(3)).max(axis=(1, 2))
  det = np.linalg.det(rot)
  for i in range(p.shape[0]):
    if bottom[i] > atol:
      raise ValueError(f"{name} pose {i}: bottom row {p[i, 3]} != [0, 0, 0, 1]")
    if ortho[i] > atol or abs(det[i] - 1) > atol:
      raise ValueError(f"{name} pose {i} is not a rotation: det={det[i]:.4g}, "
                       f"max |R R^T - I|={ortho[i]:.3g}")
  return p


def rotation_angle_deg(r_a, r_b) -> np.ndarray:
  """Geodesic angle between rotations, in degrees.

  `angle(R_a^T R_b)` via atan2(sin, cos), accurate for small and large angles.

  Args:
    r_a: `[..., 3, 3]` rotations.
    r_b: `[..., 3, 3]` rotations (broadcast against `r_a`).

  Returns:
    `[...]` angles in [0, 180].
  """
  r_a, r_b = np.asarray(r_a, np.float64), np.asarray(r_b, np.float64)
  m = np.swapaxes(r_a, -1, -2) @ r_b
  cos = (np.trace(m, axis1=-2, axis2=-1) - 1.0) / 2.0
  v = np.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                m[..., 1, 0] - m[..., 0, 1]], axis=-1)
  sin = np.linalg.norm(v, axis=-1) / 2.0
  return np.degrees(np.arctan2(sin, cos))


def find_loop_pairs(c2w, rot_eps_deg: float = 1.0, trans_eps: float = 0.01,
                    min_departure_deg: float = 5.0,
                    min_departure_trans: float = 0.1) -> np.ndarray:
  """Finds frame pairs seen from the same pose before and after a loop.

  (i, j), i < j, is a pair when the poses match (rotation angle < rot_eps_deg
  and camera-centre distance < trans_eps) and, at some frame k with
  i < k < j, the camera had left pose i (angle > min_departure_deg or
  distance > min_departure_trans). The departure test keeps a camera that
  merely stands still from counting as a loop.

  Args:
    c2w: `[T, 4, 4]` camera-to-world poses.
    rot_eps_deg: rotation tolerance of a match, degrees.
    trans_eps: translation tolerance of a match, scene units (metres).
    min_departure_deg: rotation that counts as leaving, degrees.
    min_departure_trans: translation that counts as leaving, scene units.

  Returns:
    `[P, 2]` int64 pairs sorted by (i, j); P may be 0.
  """
  p = check_poses(c2w)
  t = p.shape[0]
  ang = rotation_angle_deg(p[:, None, :3, :3], p[None, :, :3, :3])  # [T, T]
  dist = np.linalg.norm(p[:, None, :3, 3] - p[None, :, :3, 3], axis=-1)
  match = (ang < rot_eps_deg) & (dist < trans_eps)
  far = (ang > min_departure_deg) | (dist > min_departure_trans)
  later = np.triu(np.ones((t, t), bool), k=1)  # k > i
  # left[i, j]: some k with i < k < j is far from i.
  left = np.zeros((t, t), bool)
  left[:, 1:] = np.logical_or.accumulate(far & later, axis=1)[:, :-1]
  return np.argwhere(match & later & left).astype(np.int64)


def check_intrinsics(k, name: str = "K") -> np.ndarray:
  """Validates a pinhole intrinsics matrix `[3, 3]`; returns float64."""
  k = np.asarray(k, dtype=np.float64)
  if k.shape != (3, 3) or not np.all(np.isfinite(k)):
    raise ValueError(f"{name} must be a finite [3, 3] intrinsics matrix, got "
                     f"shape {k.shape}")
  if not np.allclose(k[2], [0, 0, 1]) or k[1, 0] != 0 or k[0, 0] <= 0 or k[1, 1] <= 0:
    raise ValueError(f"{name} must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] "
                     f"with fx, fy > 0, got {k.tolist()}")
  return k


def relative_pose_gt(c2w_i, c2w_j) -> tuple[np.ndarray, np.ndarray]:
  """Relative pose of camera j w.r.t. camera i from camera-to-world poses.

  Args:
    c2w_i: `[4, 4]` camera-to-world pose of frame i.
    c2w_j: `[4, 4]` camera-to-world pose of frame j.

  Returns:
    (R `[3, 3]`, t `[3]`) with X_j = R X_i + t (t in scene units).
  """
  rel = np.linalg.inv(np.asarray(c2w_j, np.float64)) @ np.asarray(c2w_i, np.float64)
  return rel[:3, :3], rel[:3, 3]


def translation_angle_deg(t_est, t_gt) -> float:
  """Angle between two translation directions in degrees, in [0, 180].

  NaN when either vector has (near) zero length.
  """
  t_est, t_gt = np.asarray(t_est, np.float64), np.asarray(t_gt, np.float64)
  ne, ng = np.linalg.norm(t_est), np.linalg.norm(t_gt)
  if not (ne > 1e-12 and ng > 1e-12) or not np.isfinite(ne * ng):
    return float("nan")
  cos = np.clip(t_est @ t_gt / (ne * ng), -1.0, 1.0)
  sin = np.linalg.norm(np.cross(t_est, t_gt)) / (ne * ng)
  return float(np.degrees(np.arctan2(sin, cos)))


def project_to_rotation(m: np.ndarray) -> np.ndarray:
  """Nearest rotation `[3, 3]` (Frobenius norm) to a `[3, 3]` matrix."""
  u, _, vt = np.linalg.svd(m)
  d = np.sign(np.linalg.det(u @ vt))
  return u @ np.diag([1.0, 1.0, d]) @ vt


def _skew(v: np.ndarray) -> np.ndarray:
  return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def _exp_so3(w: np.ndarray) -> np.ndarray:
  theta = np.linalg.norm(w)
  if theta < 1e-12:
    return np.eye(3) + _skew(w)
  k = _skew(w / theta)
  return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k


def sampson_distance(r, t, x_i, x_j) -> np.ndarray:
  """Sampson distances `[M]` of normalised points to the epipolar geometry.

  Args:
    r: `[3, 3]` rotation, X_j = R X_i + t.
    t: `[3]` translation.
    x_i: `[M, 3]` homogeneous normalised coordinates K^-1 (u, v, 1) in frame i.
    x_j: `[M, 3]` the same in frame j.
  """
  e = _skew(t) @ r
  ex, etx = x_i @ e.T, x_j @ e
  num = np.sum(x_j * ex, axis=1)
  den = ex[:, 0] ** 2 + ex[:, 1] ** 2 + etx[:, 0] ** 2 + etx[:, 1] ** 2
  return num / np.sqrt(np.maximum(den, 1e-300))


def refine_relative_pose(r, t, pts_i, pts_j, k, scale_px: float = 1.0):
  """Refines (R, t direction) on inliers by robust least squares.

  The RANSAC family returns the model of the best minimal sample; minimising
  the Sampson distance over all inliers (Huber loss, scale `scale_px`) removes
  most of the remaining sample noise. Keeps the input if refinement fails.

  Args:
    r: `[3, 3]` initial rotation.
    t: `[3]` initial translation (any norm).
    pts_i: `[M, 2]` inlier pixels in frame i.
    pts_j: `[M, 2]` matching pixels in frame j.
    k: `[3, 3]` intrinsics.
    scale_px: Huber scale in pixels.

  Returns:
    (R `[3, 3]`, unit t `[3]`).
  """
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  t0 = np.asarray(t, np.float64) / np.linalg.norm(t)
  kinv = np.linalg.inv(k)
  x_i = np.c_[pts_i, np.ones(len(pts_i))] @ kinv.T
  x_j = np.c_[pts_j, np.ones(len(pts_j))] @ kinv.T
  # Orthonormal basis of the tangent plane of the unit sphere at t0.
  b1 = np.cross(t0, [1.0, 0, 0] if abs(t0[0]) < 0.9 else [0, 1.0, 0])
  b1 /= np.linalg.norm(b1)
  b2 = np.cross(t0, b1)

  def unpack(p):
    tt = t0 + p[3] * b1 + p[4] * b2
    return r @ _exp_so3(p[:3]), tt / np.linalg.norm(tt)

  def residual(p):
    return sampson_distance(*unpack(p), x_i, x_j)

  f = 0.5 * (k[0, 0] + k[1, 1])
  try:
    sol = optimize.least_squares(residual, np.zeros(5), loss="huber",
                                 f_scale=scale_px / f, method="trf",
                                 x_scale=1.0, max_nfev=200)
  except (ValueError, np.linalg.LinAlgError):
    return r, t0
  if not np.all(np.isfinite(sol.x)):
    return r, t0
  return unpack(sol.x)

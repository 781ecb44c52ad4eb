"""Camera poses: relative poses, the 12-d `[R|t]` vector, look-at, rotations.

Convention (see the package docstring): camera-to-world 4x4 matrices, OpenCV
camera axes (x right, y down, z forward), metres. Quaternions are scalar-first
`(w, x, y, z)` with `w >= 0`; axis-angle vectors have length = angle in radians.

Everything here is array-API neutral: numpy in -> numpy out, jax in -> jax out
(also under `jax.jit`), so the model can call the same functions at run time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def xp_of(*arrays):
  """The array namespace for `arrays`: `jax.numpy` if any is a jax array, else numpy."""
  for a in arrays:
    if isinstance(a, jax.Array):
      return jnp
  return np


def _asarray(xp, x):
  if xp is np:
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _t(m):
  """Swaps the last two axes."""
  return m.swapaxes(-1, -2)


def make_pose(rotation, translation):
  """Builds camera-to-world matrices.

  Args:
    rotation: [..., 3, 3] camera-to-world rotation (columns = camera axes in world).
    translation: [..., 3] camera centre in world coordinates.

  Returns:
    [..., 4, 4] poses with last row `[0, 0, 0, 1]`.
  """
  xp = xp_of(rotation, translation)
  rotation = _asarray(xp, rotation)
  translation = _asarray(xp, translation)
  batch = np.broadcast_shapes(rotation.shape[:-2], translation.shape[:-1])
  rotation = xp.broadcast_to(rotation, batch + (3, 3))
  translation = xp.broadcast_to(translation, batch + (3,))
  top = xp.concatenate([rotation, translation[..., None]], axis=-1)
  bottom = xp.broadcast_to(xp.asarray([0, 0, 0, 1], dtype=top.dtype), batch + (1, 4))
  return xp.concatenate([top, bottom], axis=-2)


def invert_pose(poses):
  """Inverts rigid transforms `[..., 4, 4]` exactly (R^T, -R^T t)."""
  xp = xp_of(poses)
  poses = _asarray(xp, poses)
  rt = _t(poses[..., :3, :3])
  t = -xp.einsum("...ij,...j->...i", rt, poses[..., :3, 3])
  return make_pose(rt, t)


def relative_to(poses, ref):
  """Expresses poses in the frame of a reference camera: `ref^-1 @ pose`.

  Args:
    poses: [..., T, 4, 4] camera-to-world.
    ref: [..., 4, 4] camera-to-world of the reference camera (broadcast over T).

  Returns:
    [..., T, 4, 4]; the reference pose itself maps to the identity.
  """
  xp = xp_of(poses, ref)
  poses = _asarray(xp, poses)
  ref = _asarray(xp, ref)
  return invert_pose(ref)[..., None, :, :] @ poses


def relative_poses(poses, reference="source_first", source_poses=None):
  """Target poses relative to the source camera, as the model consumes them.

  Args:
    poses: [..., T, 4, 4] target camera-to-world poses.
    reference: `"source_first"`: relative to the source camera's first frame
      (`source_poses[..., 0, :, :]`, or `poses[..., 0, :, :]` when no source is
      given); `"pair"`: frame t relative to the source camera at frame t.
    source_poses: [..., T, 4, 4] source camera-to-world poses (required for "pair").

  Returns:
    [..., T, 4, 4] relative poses.
  """
  if reference == "source_first":
    ref = poses if source_poses is None else source_poses
    return relative_to(poses, ref[..., 0, :, :])
  if reference == "pair":
    if source_poses is None:
      raise ValueError("relative_poses(reference='pair') needs source_poses [..., T, 4, 4]")
    if source_poses.shape[-3] != poses.shape[-3]:
      raise ValueError(f"relative_poses(reference='pair'): source has {source_poses.shape[-3]} "
                       f"frames but target has {poses.shape[-3]}; expected the same number")
    return invert_pose(source_poses) @ poses
  raise ValueError(f"unknown camera reference {reference!r}: expected 'source_first' or 'pair'")


def pose_to_12(poses):
  """Flattens the top 3x4 `[R|t]` of `[..., 4, 4]` row-major into `[..., 12]`."""
  top = poses[..., :3, :]
  return top.reshape(tuple(top.shape[:-2]) + (12,))


def pose_from_12(vec):
  """Inverse of `pose_to_12`: `[..., 12] -> [..., 4, 4]`."""
  xp = xp_of(vec)
  vec = _asarray(xp, vec)
  m = vec.reshape(tuple(vec.shape[:-1]) + (3, 4))
  return make_pose(m[..., :3], m[..., 3])


def _normalize(xp, v, eps=1e-12):
  return v / xp.maximum(xp.linalg.norm(v, axis=-1, keepdims=True), eps)


def look_at(eye, target, up=(0.0, -1.0, 0.0)):
  """Camera-to-world pose of a camera at `eye` looking at `target`.

  The camera's +z points at the target, its -y (image up) is as close to `up`
  as possible. With our world axes (y down) the default `up` is world -y.

  Args:
    eye: [..., 3] camera centre.
    target: [..., 3] point to look at (must differ from `eye`).
    up: [..., 3] world up direction (not parallel to the viewing direction).

  Returns:
    [..., 4, 4] camera-to-world poses.
  """
  xp = xp_of(eye, target, up)
  eye, target, up = (_asarray(xp, a) for a in (eye, target, up))
  z = _normalize(xp, target - eye)
  up = xp.broadcast_to(up, z.shape)
  x = _normalize(xp, xp.cross(z, up))
  y = xp.cross(z, x)
  return make_pose(xp.stack([x, y, z], axis=-1), xp.broadcast_to(eye, z.shape))


def _skew(xp, v):
  zero = xp.zeros_like(v[..., 0])
  return xp.stack([
      xp.stack([zero, -v[..., 2], v[..., 1]], axis=-1),
      xp.stack([v[..., 2], zero, -v[..., 0]], axis=-1),
      xp.stack([-v[..., 1], v[..., 0], zero], axis=-1)], axis=-2)


def axis_angle_to_matrix(rotvec):
  """Rodrigues: `[..., 3]` axis-angle (radians) -> `[..., 3, 3]` rotation."""
  xp = xp_of(rotvec)
  rotvec = _asarray(xp, rotvec)
  theta = xp.linalg.norm(rotvec, axis=-1)[..., None, None]
  small = theta < 1e-6
  safe = xp.where(small, 1.0, theta)
  a = xp.where(small, 1.0 - theta**2 / 6.0, xp.sin(safe) / safe)
  b = xp.where(small, 0.5 - theta**2 / 24.0, (1.0 - xp.cos(safe)) / safe**2)
  k = _skew(xp, rotvec)
  eye = xp.eye(3, dtype=rotvec.dtype)
  return eye + a * k + b * (k @ k)


def quaternion_to_matrix(quat):
  """`[..., 4]` quaternion `(w, x, y, z)` (normalised here) -> `[..., 3, 3]` rotation."""
  xp = xp_of(quat)
  q = _normalize(xp, _asarray(xp, quat))
  w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
  return xp.stack([
      xp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
      xp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
      xp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
  ], axis=-2)


def matrix_to_quaternion(rot):
  """`[..., 3, 3]` rotation -> `[..., 4]` unit quaternion `(w, x, y, z)`, `w >= 0`.

  Branch-free (Shepperd's method: all four candidates, keep the best
  conditioned), so it works under `jax.jit` and `vmap`.
  """
  xp = xp_of(rot)
  m = _asarray(xp, rot)
  m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
  q_abs = xp.sqrt(xp.maximum(xp.stack([
      1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
      1 - m00 + m11 - m22, 1 - m00 - m11 + m22], axis=-1), 0.0))
  m01, m02, m10 = m[..., 0, 1], m[..., 0, 2], m[..., 1, 0]
  m12, m20, m21 = m[..., 1, 2], m[..., 2, 0], m[..., 2, 1]
  d21, d02, d10 = m21 - m12, m02 - m20, m10 - m01
  s21, s02, s10 = m21 + m12, m02 + m20, m10 + m01
  cands = xp.stack([
      xp.stack([q_abs[..., 0]**2, d21, d02, d10], axis=-1),
      xp.stack([d21, q_abs[..., 1]**2, s10, s02], axis=-1),
      xp.stack([d02, s10, q_abs[..., 2]**2, s21], axis=-1),
      xp.stack([d10, s02, s21, q_abs[..., 3]**2], axis=-1)], axis=-2)
  cands = cands / (2.0 * xp.maximum(q_abs, 0.1))[..., None]
  best = xp.argmax(q_abs, axis=-1)
  onehot = (xp.arange(4) == best[..., None]).astype(m.dtype)
  q = xp.sum(cands * onehot[..., None], axis=-2)
  q = _normalize(xp, q)
  return xp.where(q[..., :1] < 0, -q, q)


def matrix_to_axis_angle(rot):
  """`[..., 3, 3]` rotation -> `[..., 3]` axis-angle (radians, angle in [0, pi])."""
  xp = xp_of(rot)
  q = matrix_to_quaternion(rot)
  vnorm = xp.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
  angle = 2.0 * xp.arctan2(vnorm, q[..., :1])
  small = vnorm < 1e-8
  scale = xp.where(small, 2.0 / xp.maximum(q[..., :1], 1e-12), angle / xp.where(small, 1.0, vnorm))
  return q[..., 1:] * scale


def rotation_angle(rot):
  """Rotation angle in radians of `[..., 3, 3]` rotations, in [0, pi]."""
  xp = xp_of(rot)
  return xp.linalg.norm(matrix_to_axis_angle(rot), axis=-1)


def rotation_x(angle):
  """Rotation about the camera x axis; positive `angle` tilts +z towards -y (up)."""
  xp = xp_of(angle)
  angle = _asarray(xp, angle)
  return axis_angle_to_matrix(angle[..., None] * xp.asarray([1.0, 0.0, 0.0], dtype=angle.dtype))


def rotation_y(angle):
  """Rotation about the camera y axis; positive `angle` turns +z towards +x (right)."""
  xp = xp_of(angle)
  angle = _asarray(xp, angle)
  return axis_angle_to_matrix(angle[..., None] * xp.asarray([0.0, 1.0, 0.0], dtype=angle.dtype))


def rotation_error(rot, atol=1e-4):
  """Why `[3, 3]` `rot` is not a rotation (a short text), or None when it is one.

  Numpy only (validation of user input): checks finiteness, orthonormality
  (`|R^T R - I| <= atol`) and `det = +1`.
  """
  rot = np.asarray(rot, dtype=np.float64)
  if rot.shape != (3, 3):
    return f"expected a 3x3 rotation, got shape {rot.shape}"
  if not np.all(np.isfinite(rot)):
    return "contains NaN or inf"
  det = float(np.linalg.det(rot))
  ortho = float(np.abs(rot.T @ rot - np.eye(3)).max())
  if ortho > atol or abs(det - 1.0) > atol * 3:
    return f"is not a rotation: det={det:.4g}, max|R^T R - I|={ortho:.3g}"
  return None


def is_rotation(rot, atol=1e-4) -> np.ndarray:
  """Whether each `[..., 3, 3]` matrix is a proper rotation (numpy bool `[...]`)."""
  rot = np.asarray(rot, dtype=np.float64)
  finite = np.all(np.isfinite(rot), axis=(-1, -2))
  rot = np.where(finite[..., None, None], rot, 0.0)
  ortho = np.abs(np.swapaxes(rot, -1, -2) @ rot - np.eye(3)).max(axis=(-1, -2)) <= atol
  det = np.abs(np.linalg.det(rot) - 1.0) <= atol * 3
  return finite & ortho & det

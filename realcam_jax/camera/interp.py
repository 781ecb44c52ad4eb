"""Pose interpolation: slerp for rotations, linear or C1-cubic for positions.

Array-API neutral and branch-free (numpy in -> numpy out, jax in -> jax out,
fine under `jax.jit`), so the interactive session can blend a camera change
into the upcoming frames inside compiled code.
"""

from __future__ import annotations

from realcam_jax.camera.pose import (_asarray, make_pose, matrix_to_quaternion,
                                     quaternion_to_matrix, xp_of)


def slerp_quaternion(q0, q1, w):
  """Spherical linear interpolation of unit quaternions along the short arc.

  Args:
    q0, q1: [..., 4] unit quaternions `(w, x, y, z)`.
    w: [...] weights; 0 gives q0, 1 gives q1.

  Returns:
    [..., 4] unit quaternions.
  """
  xp = xp_of(q0, q1, w)
  q0, q1, w = (_asarray(xp, a) for a in (q0, q1, w))
  dot = xp.sum(q0 * q1, axis=-1, keepdims=True)
  q1 = xp.where(dot < 0, -q1, q1)
  dot = xp.clip(xp.abs(dot), 0.0, 1.0)
  theta = xp.arccos(dot)
  sin = xp.sin(theta)
  w = w[..., None]
  near = sin < 1e-6
  safe = xp.where(near, 1.0, sin)
  a = xp.where(near, 1.0 - w, xp.sin((1.0 - w) * theta) / safe)
  b = xp.where(near, w, xp.sin(w * theta) / safe)
  q = a * q0 + b * q1
  return q / xp.linalg.norm(q, axis=-1, keepdims=True)


def slerp_rotation(r0, r1, w):
  """Slerp between `[..., 3, 3]` rotations with weights `[...]`."""
  return quaternion_to_matrix(
      slerp_quaternion(matrix_to_quaternion(r0), matrix_to_quaternion(r1), w))


def blend_poses(p0, p1, w):
  """Pose blend: slerp the rotations, lerp the positions. `[..., 4, 4]`, w `[...]`."""
  xp = xp_of(p0, p1, w)
  p0, p1, w = (_asarray(xp, a) for a in (p0, p1, w))
  rot = slerp_rotation(p0[..., :3, :3], p1[..., :3, :3], w)
  t = (1.0 - w[..., None]) * p0[..., :3, 3] + w[..., None] * p1[..., :3, 3]
  return make_pose(rot, t)


def smoothstep(x):
  """`3x^2 - 2x^3` on x clipped to [0, 1] (zero slope at both ends)."""
  xp = xp_of(x)
  x = xp.clip(_asarray(xp, x), 0.0, 1.0)
  return x * x * (3.0 - 2.0 * x)


def interpolate_poses(key_poses, key_times, query_times, translation="linear"):
  """Interpolates a keyframed camera path.

  Rotations are slerped between neighbouring keys; positions are linear or,
  with `translation="smooth"`, a C1 cubic Hermite spline with finite-difference
  (Catmull-Rom style) tangents that passes through every key. Queries outside
  `[key_times[0], key_times[-1]]` are clamped to the end keys.

  Args:
    key_poses: [K, 4, 4] camera-to-world keyframes, K >= 1.
    key_times: [K] strictly increasing times.
    query_times: [Q] times to evaluate.
    translation: "linear" or "smooth".

  Returns:
    [Q, 4, 4] poses.
  """
  xp = xp_of(key_poses, key_times, query_times)
  kp, kt, qt = (_asarray(xp, a) for a in (key_poses, key_times, query_times))
  if translation not in ("linear", "smooth"):
    raise ValueError(f"unknown translation interpolation {translation!r}: "
                     "expected 'linear' or 'smooth'")
  if kp.ndim != 3 or kp.shape[1:] != (4, 4) or kt.shape != (kp.shape[0],):
    raise ValueError(f"interpolate_poses: expected key_poses [K, 4, 4] and key_times [K], got "
                     f"{tuple(kp.shape)} and {tuple(kt.shape)}")
  num_keys = kp.shape[0]
  if num_keys == 1:
    return xp.broadcast_to(kp[0], tuple(qt.shape) + (4, 4))
  qt = xp.clip(qt, kt[0], kt[-1])
  i = xp.clip(xp.searchsorted(kt, qt, side="right") - 1, 0, num_keys - 2)
  t0, t1 = kt[i], kt[i + 1]
  h = t1 - t0
  u = (qt - t0) / h
  rot = slerp_rotation(kp[i, :3, :3], kp[i + 1, :3, :3], u)
  pos = kp[:, :3, 3]
  p0, p1 = pos[i], pos[i + 1]
  if translation == "linear":
    t = p0 + u[..., None] * (p1 - p0)
  else:
    # Tangents dp/dt: central differences inside, one-sided at the ends.
    prev_t = xp.concatenate([kt[:1], kt[:-1]])
    next_t = xp.concatenate([kt[1:], kt[-1:]])
    prev_p = xp.concatenate([pos[:1], pos[:-1]])
    next_p = xp.concatenate([pos[1:], pos[-1:]])
    tangent = (next_p - prev_p) / (next_t - prev_t)[:, None]
    m0, m1 = tangent[i] * h[..., None], tangent[i + 1] * h[..., None]
    u1 = u[..., None]
    u2, u3 = u1 * u1, u1 * u1 * u1
    t = ((2 * u3 - 3 * u2 + 1) * p0 + (u3 - 2 * u2 + u1) * m0
         + (-2 * u3 + 3 * u2) * p1 + (u3 - u2) * m1)
  return make_pose(rot, t)


def resample_path(poses, num_frames, translation="linear"):
  """Resamples a `[T, 4, 4]` path to `num_frames` poses evenly spaced in frame index."""
  xp = xp_of(poses)
  poses = _asarray(xp, poses)
  n = poses.shape[0]
  key_t = xp.linspace(0.0, 1.0, n) if n > 1 else xp.zeros((1,))
  query_t = xp.linspace(0.0, 1.0, num_frames)
  return interpolate_poses(poses, key_t.astype(poses.dtype), query_t.astype(poses.dtype),
                           translation)


def smooth_transition(current_path, new_path, start, duration):
  """Blends from the current camera path into a new one over `duration` frames.

  Frame t gets weight `w_t = smoothstep((t - start) / duration)` on the new
  path: frames before `start` follow `current_path`, frames from
  `start + duration` on follow `new_path`, and the blend in between has zero
  velocity jump at both ends (rotation by slerp, position by lerp).
  `duration <= 0` switches at `start`. `start` and `duration` may be traced.

  Args:
    current_path: [..., T, 4, 4] the path the session is following.
    new_path: [..., T, 4, 4] the requested path (same frames).
    start: frame index where the blend begins.
    duration: length of the blend in frames.

  Returns:
    [..., T, 4, 4] blended path.
  """
  xp = xp_of(current_path, new_path, start, duration)
  cur, new = _asarray(xp, current_path), _asarray(xp, new_path)
  if cur.shape != new.shape:
    raise ValueError(f"smooth_transition: current path {tuple(cur.shape)} and new path "
                     f"{tuple(new.shape)} must have the same shape [..., T, 4, 4]")
  frames = xp.arange(cur.shape[-3], dtype=cur.dtype)
  start = _asarray(xp, start).astype(cur.dtype)
  duration = _asarray(xp, duration).astype(cur.dtype)
  pos = (frames - start) / xp.maximum(duration, 1e-6)
  w = xp.where(duration > 0, smoothstep(pos), (frames >= start).astype(cur.dtype))
  w = xp.broadcast_to(w, cur.shape[:-2])
  return blend_poses(cur, new, w)

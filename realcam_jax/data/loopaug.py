"""LoopAug: loop-closed training sequences from a synchronised two-camera clip.

A clip has T frames of camera A (source) and camera B (target) of the same
scene. Played forward and then backward (the palindrome `0..T-1, T-2..0`),
both cameras return exactly to where they started, and the scene plays back
to its first state, so a model trained on such sequences learns that coming
back to a pose means seeing the same content again.

Truncation: the training window has a fixed length L. LoopAug picks a random
stretch `a..a+m` of the clip, plays it forward and back, and keeps the L
frames that start at `a`:

  indices = a, a+1, ..., a+m (the turn), a+m-1, ..., a+2m-(L-1)

The turn sits at position m = round(u (L-1)) of the window with u drawn from
`turn_range` (default (0.5, 0.5): the middle, so for odd L the window ends on
the frame it started from - same poses, same images). `a` is uniform over the
starts that keep every index inside the clip. Poses are re-expressed relative
to the window's first source pose, like every other training example.

Variants (`data.loopaug_variant`, `VARIANTS`):

  palindrome      (default) both streams play forward and back. At the return frame
                  the *source* image equals the outbound one, so a model can close the
                  loop by re-rendering the source instead of remembering the target.
  forward_source  the source does not repeat: it plays forward `a, a+1, ..., a+L-1`
                  (new frames, its camera moving on) while the target plays the
                  palindrome window. The target's static content at a revisited pose is
                  exact; its moving objects play back while the source's run on (the
                  two-camera clip holds no render of the target pose at a later time),
                  so only the static region is consistent. Rendered true loops
                  (`synthetic.render_true_loop`) are the synthetic world's upper bound.
"""

from __future__ import annotations

import numpy as np

from realcam_jax.camera.pose import relative_to


VARIANTS = ("palindrome", "forward_source")


def palindrome(num_frames: int) -> np.ndarray:
  """`[0, 1, ..., T-1, T-2, ..., 0]`: i64[2T-1]."""
  if num_frames < 1:
    raise ValueError(f"palindrome: num_frames={num_frames}; expected >= 1")
  fwd = np.arange(num_frames)
  return np.concatenate([fwd, fwd[-2::-1]])


def loop_window(num_frames: int, length: int, rng: np.random.Generator,
                turn_range=(0.5, 0.5), max_start: int | None = None) -> tuple[np.ndarray, int]:
  """Frame indices of one LoopAug window.

  Args:
    num_frames: T, frames in the clip.
    length: L >= 3, frames in the window (L <= 2T-1 for a centred turn).
    rng: numpy Generator (the only randomness).
    turn_range: (lo, hi) in [0, 1]: where in the window the camera turns back.
    max_start: the latest allowed start `a` (None: any that keeps the window inside the
      clip); `forward_source` passes T - L so that `a .. a+L-1` fits too.

  Returns:
    (indices i64[L] into the clip, turn: position of the turn in the window,
    with 1 <= turn <= L-2 so the window has motion both ways).

  Raises:
    ValueError: a window of that length and turn does not fit in the clip.
  """
  lo, hi = (float(x) for x in turn_range)
  if not 0.0 <= lo <= hi <= 1.0:
    raise ValueError(f"loopaug turn_range={turn_range!r}: expected 0 <= lo <= hi <= 1")
  if length < 3:
    raise ValueError(f"loopaug window length {length}: expected >= 3 (out, turn, back)")
  m = int(np.clip(np.round(rng.uniform(lo, hi) * (length - 1)), 1, length - 2))
  a_min, a_max = max(0, length - 1 - 2 * m), num_frames - 1 - m
  if max_start is not None:
    a_max = min(a_max, int(max_start))
  if a_min > a_max:
    need = max(m + 1, length - m) if max_start is None else max(m + 1, length - m, length)
    raise ValueError(
        f"loopaug: a {length}-frame window turning at frame {m} needs a clip of "
        f"{need} frames, got {num_frames}; lower data.train_frames or "
        "widen data.loopaug_turn")
  a = int(rng.integers(a_min, a_max + 1))
  forward = a + np.arange(m + 1)
  back = a + m - 1 - np.arange(length - 1 - m)
  return np.concatenate([forward, back]), m


def apply_loopaug(source, target, source_c2w, target_c2w, length: int,
                  rng: np.random.Generator, turn_range=(0.5, 0.5),
                  variant: str = "palindrome") -> dict:
  """Builds one LoopAug example from a synchronised clip.

  Args:
    source: [T, ...] source frames (pixels or latents).
    target: [T, ...] target frames, same T.
    source_c2w, target_c2w: f[T, 4, 4] world poses of the two cameras.
    length: L, window length.
    rng: numpy Generator.
    turn_range: see `loop_window`.
    variant: one of VARIANTS (see the module docstring).

  Returns:
    dict(source [L, ...], target [L, ...], source_poses f32[L,4,4] and
    target_poses f32[L,4,4] relative to the window's first source pose,
    indices i64[L] (the target's; the source's too for "palindrome"),
    source_indices i64[L], turn int).
  """
  if variant not in VARIANTS:
    raise ValueError(f"loopaug variant {variant!r}: expected one of {', '.join(VARIANTS)}")
  t = len(source)
  for name, arr in (("target", target), ("source_c2w", source_c2w),
                    ("target_c2w", target_c2w)):
    if len(arr) != t:
      raise ValueError(f"apply_loopaug: {name} has {len(arr)} frames but source has {t}; "
                       "expected a synchronised clip")
  forward = variant == "forward_source"
  idx, turn = loop_window(t, length, rng, turn_range, max_start=t - length if forward else None)
  src_idx = idx[0] + np.arange(length) if forward else idx
  src_poses = np.asarray(source_c2w)[src_idx]
  ref = src_poses[0]
  return dict(source=np.asarray(source)[src_idx], target=np.asarray(target)[idx],
              source_poses=relative_to(src_poses, ref).astype(np.float32),
              target_poses=relative_to(np.asarray(target_c2w)[idx], ref).astype(np.float32),
              indices=idx, source_indices=src_idx, turn=turn)

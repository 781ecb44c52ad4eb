"""Loop closure scored against the truth, next to the old self-consistency number.

On a true loop (scene time runs forward while the camera returns), a pair (i, j) of
frames at the same target pose is a first visit i and a revisit j
(`geometry.find_loop_pairs`). Reported side by side (docs/metrics.md):

  revisit_psnr         PSNR of the generated revisit frames j against the truth, whole frame
  revisit_psnr_static  the same on the truth's static region of frame j
  revisit_mae_static   mean absolute error on that region (unit range)
  consistency_mae      first visit vs revisit of the *generated* video on pixels static in
                       both (`metrics.loop_closure_error`): a frozen or copied video scores
                       well here, so it is never read alone

The truth's own consistency is exactly 0 on the static region, so a correct video scores
the best on every column; a static (frozen) or blurred one loses on the revisit columns.
"""

from __future__ import annotations

import numpy as np

from realcam_jax.eval import metrics

LOOP_METRICS = ("revisit_psnr", "revisit_psnr_static", "revisit_mae_static", "consistency_mae")


def loop_scores(pred, gt, pairs, static_mask) -> dict:
  """Revisit-vs-truth errors and the first-visit/revisit consistency of one video.

  Args:
    pred: u8[T, H, W, 3] generated video (or unit-range float).
    gt: u8[T, H, W, 3] the truth along the same loop.
    pairs: int[P, 2] (first visit, revisit) frame pairs at the same pose.
    static_mask: bool[T, H, W] the truth's static region.

  Returns:
    {name: float} for LOOP_METRICS; all NaN when there is no usable pair (no pair, or no
    pixel static in both frames of any pair).
  """
  nan = {k: float("nan") for k in LOOP_METRICS}
  pred = metrics.check_pixels(pred, "pred")
  gt = metrics.check_pixels(gt, "gt")
  if pred.shape != gt.shape or pred.ndim != 4:
    raise ValueError(f"loop_scores: pred {pred.shape} and gt {gt.shape} must be one "
                     "[T, H, W, C] shape")
  t, h, w, _ = pred.shape
  mask = metrics.prepare_mask(static_mask, (t,), h, w, name="static_mask")
  pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
  if len(pairs):
    both = mask[pairs[:, 0]] & mask[pairs[:, 1]]
    pairs = pairs[both.reshape(len(pairs), -1).any(axis=1)]
  if not len(pairs):
    return nan
  revisits = np.unique(pairs[:, 1])
  whole = metrics.psnr(pred[revisits], gt[revisits]).mean
  static = metrics.psnr(pred[revisits], gt[revisits], mask[revisits]).mean
  x = metrics.to_unit_range(pred[revisits], "pred")
  y = metrics.to_unit_range(gt[revisits], "gt")
  err = np.abs(x - y).mean(-1)
  m = mask[revisits]
  mae = float(np.mean([err[k][m[k]].mean() for k in range(len(revisits))]))
  cons = metrics.loop_closure_error(pred, pairs, mask).mean_mae
  return dict(revisit_psnr=whole, revisit_psnr_static=static, revisit_mae_static=mae,
              consistency_mae=cons)

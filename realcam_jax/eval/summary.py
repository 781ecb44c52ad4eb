"""Per-scene scores -> the results `realcam eval` reports: scene means with bootstrap
95% intervals, the mean over the ten presets, and which references each system beats.

    agg = aggregate(scores)                       # one row, one case, one length
    results = add_presets_mean(results, presets)  # results[row]["presets"][length]
    add_beats(results, systems, references)       # results[row][case][length]["beats"]

A system *beats* a reference on a metric when the paired bootstrap interval of its
per-scene difference (system - reference) lies above 0 (`stats.beats`).
"""

from __future__ import annotations

import numpy as np

from realcam_jax.eval import loops, stats

# Scalar per-scene metrics, in table order (docs/metrics.md).
METRICS = ("psnr", "ssim", "psnr_static", "ssim_static", "psnr_object", "ssim_object",
           "sharpness", "sharpness_object", "flicker_ratio", "flicker", "flicker_gt",
           *loops.LOOP_METRICS, "rot_err_deg", "trans_err_deg")
# The metrics "beats" is judged on (all: higher is better).
# Rows with no model that every system is also judged against (eval/systems.py).
BASELINE_SYSTEMS = ("copy_source", "warp_source")
BEAT_METRICS = ("psnr", "psnr_object", "ssim_object", "revisit_psnr_static")
PRESETS_MEAN = "presets"

# Buckets of the source -> target rotation at frame 0 (the rig draws 15-75 degrees of
# azimuth change): copying the source degrades as the change grows (design.md §8).
VIEW_CHANGE_EDGES = (35.0, 55.0)


def view_change_bucket(deg: float) -> str:
  """'<35°', '35-55°' or '>=55°' for the default edges."""
  lo, hi = VIEW_CHANGE_EDGES
  return f"<{lo:g}°" if deg < lo else (f"{lo:g}-{hi:g}°" if deg < hi else f">={hi:g}°")


def _mean(values) -> float:
  """Mean over scenes, ignoring NaN (NaN if all are)."""
  v = np.asarray(values, np.float64)
  v = v[~np.isnan(v)]
  return float(v.mean()) if v.size else float("nan")


def _by_view_change(scenes: list[dict]) -> dict:
  """{bucket: {scenes, psnr, psnr_object}} over the scenes whose view change falls in it."""
  out = {}
  for s in scenes:
    if np.isfinite(s["view_change_deg"]) and s["view_change_deg"] > 0:
      out.setdefault(view_change_bucket(s["view_change_deg"]), []).append(s)
  order = [view_change_bucket(x) for x in (0.0, VIEW_CHANGE_EDGES[0], VIEW_CHANGE_EDGES[1])]
  return {b: dict(scenes=len(out[b]), psnr=_mean([s["psnr"] for s in out[b]]),
                  psnr_object=_mean([s["psnr_object"] for s in out[b]]))
          for b in order if b in out}


def aggregate(scores: list[dict], **bootstrap) -> dict:
  """Scene means of METRICS with their intervals, per-frame PSNR and per-scene values.

  Args:
    scores: one dict per scene with METRICS, `per_frame_psnr` f64[T], `seed`,
      `view_change_deg`.
    **bootstrap: `stats.bootstrap_ci` options (samples, seed, level).

  Returns:
    {metric: mean, "ci": {metric: [lo, hi]}, "per_frame_psnr": [T floats],
    "scenes": [{seed, view_change_deg, metric: value}], "by_view_change": {...}}.
  """
  out, ci = {}, {}
  for m in METRICS:
    mean, lo, hi = stats.bootstrap_ci([s[m] for s in scores], **bootstrap)
    out[m], ci[m] = mean, [lo, hi]
  out["ci"] = ci
  out["per_frame_psnr"] = [float(x) for x in np.mean([s["per_frame_psnr"] for s in scores], 0)]
  out["scenes"] = [{"seed": int(s["seed"]), "view_change_deg": float(s["view_change_deg"]),
                    **{m: float(s[m]) for m in METRICS}} for s in scores]
  out["by_view_change"] = _by_view_change(out["scenes"])
  return out


def mean_over_cases(per_case: list[list[dict]]) -> list[dict]:
  """Per-scene scores averaged over several cases (same scenes, same length, same order).

  Args:
    per_case: [case][scene] score dicts.
  """
  out = []
  for scenes in zip(*per_case):
    with np.errstate(invalid="ignore"):
      row = {m: _mean([s[m] for s in scenes]) for m in METRICS}
    row["per_frame_psnr"] = np.mean([s["per_frame_psnr"] for s in scenes], 0)
    row.update(seed=scenes[0]["seed"], view_change_deg=0.0)
    out.append(row)
  return out


def add_beats(results: dict, systems, references, **bootstrap) -> None:
  """Adds `beats` {metric: [reference names]} to every system's aggregate, in place.

  Args:
    results: {row: {case: {length: aggregate}}}.
    systems: rows judged (copy_source and warp_source among them are judged too, and are
      themselves rows the others are compared with).
    references: rows built from the truth.
  """
  for name in systems:
    others = [r for r in references if r != name]
    others += [b for b in BASELINE_SYSTEMS if b in results and b != name]
    for case, per in results[name].items():
      for length, agg in per.items():
        won = {}
        for m in BEAT_METRICS:
          a = [s[m] for s in agg["scenes"]]
          won[m] = [o for o in others
                    if stats.beats(a, [s[m] for s in results[o][case][length]["scenes"]],
                                   **bootstrap)]
        agg["beats"] = won

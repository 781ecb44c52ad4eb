"""Scene-level statistics: means with percentile-bootstrap 95% intervals, paired differences.

Every number `realcam eval` reports is a mean over scenes. Its interval resamples the
scenes with replacement (`BOOTSTRAP_SAMPLES` resamples, a fixed seed, so reruns agree)
and takes the 2.5th and 97.5th percentiles of the resampled means. A system *beats* a
reference on a metric when the interval of the paired per-scene difference lies above 0
(docs/metrics.md).
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0
LEVEL = 0.95


def _finite(values) -> np.ndarray:
  v = np.asarray(values, np.float64).reshape(-1)
  return v[np.isfinite(v)]


def bootstrap_ci(values, *, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED,
                 level: float = LEVEL) -> tuple[float, float, float]:
  """(mean, lo, hi): the mean of the finite values and its percentile-bootstrap interval.

  Args:
    values: f[S] one value per scene (NaN / inf are dropped: undefined for that scene).
    samples: bootstrap resamples.
    seed: resampling seed.
    level: interval coverage.

  Returns:
    three floats; all NaN if no value is finite; lo = hi = mean for one value.
  """
  if not 0 < level < 1:
    raise ValueError(f"bootstrap level {level}: expected 0 < level < 1")
  if samples < 1:
    raise ValueError(f"bootstrap samples {samples}: expected >= 1")
  v = _finite(values)
  if v.size == 0:
    return (float("nan"),) * 3
  mean = float(v.mean())
  if v.size == 1:
    return mean, mean, mean
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, v.size, size=(samples, v.size))
  means = v[idx].mean(axis=1)
  a = (1 - level) / 2
  lo, hi = np.quantile(means, [a, 1 - a])
  return mean, float(lo), float(hi)


def paired_difference_ci(a, b, **kw) -> tuple[float, float, float]:
  """`bootstrap_ci` of the per-scene difference a - b over scenes where both are finite.

  Args:
    a, b: f[S] values of two rows on the same scenes.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"paired_difference_ci: {a.shape} values vs {b.shape}; expected one "
                     "value per scene for both")
  keep = np.isfinite(a) & np.isfinite(b)
  return bootstrap_ci(a[keep] - b[keep], **kw)


def beats(a, b, higher_is_better: bool = True, **kw) -> bool:
  """True when the paired interval of a - b lies strictly on the better side of 0."""
  _, lo, hi = paired_difference_ci(a, b, **kw)
  if np.isnan(lo):
    return False
  return lo > 0 if higher_is_better else hi < 0

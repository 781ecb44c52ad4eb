"""Paired comparison of one system across `realcam eval` runs (an ablation's arms).

    python launch/compare_evals.py BASE/results.json ARM/results.json [...] \
        [--system student] [--metrics psnr,psnr_object] [--out FILE.md]

Each arm's per-scene scores minus the base's on the same scenes (same clip seeds, same
noise seed: `realcam eval` with the same --num-scenes / --seed), per case and length, as
mean [95% paired bootstrap interval] (`eval.stats.paired_difference_ci`). An interval that
excludes 0 separates the arms; one that spans 0 does not. Runs whose scenes differ are
refused (the difference would not be paired).
"""

from __future__ import annotations

import argparse
import json
import sys

from realcam_jax.eval import stats


def _load(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise SystemExit(f"compare_evals: cannot read results {path!r}: {e}")


def _cell(run: dict, path: str, system: str, case: str, length: str) -> dict:
  """The record's aggregate of one system / case / length (its means and its `scenes`)."""
  try:
    return run["results"][system][case][length]
  except KeyError:
    have = sorted(run.get("results", {}))
    raise SystemExit(f"compare_evals: {path!r} has no scores of system {system!r}, case "
                     f"{case!r}, length {length!r} (systems there: {have})")


def compare(runs: list[tuple[str, dict]], system: str, metrics: list[str],
            samples: int = stats.BOOTSTRAP_SAMPLES) -> list[dict]:
  """Rows {arm, case, length, metric, base, arm_mean, diff, lo, hi} for every arm after the
  first, over the base's cases and lengths (per-scene presets averaged as eval does)."""
  (base_path, base), rows = runs[0], []
  for case in base["results"][system]:
    for length in base["results"][system][case]:
      ref_cell = _cell(base, base_path, system, case, length)
      ref = ref_cell["scenes"]
      for path, run in runs[1:]:
        arm_cell = _cell(run, path, system, case, length)
        arm = arm_cell["scenes"]
        if [s["seed"] for s in arm] != [s["seed"] for s in ref]:
          raise SystemExit(f"compare_evals: {path!r} and {base_path!r} scored different scenes "
                           f"in case {case!r} / {length!r}; rerun both with the same "
                           "--num-scenes and --split")
        for m in metrics:
          a, b = [s[m] for s in arm], [s[m] for s in ref]
          diff, lo, hi = stats.paired_difference_ci(a, b, samples=samples)
          rows.append(dict(arm=path, case=case, length=length, metric=m, base=ref_cell[m],
                           arm_mean=arm_cell[m], diff=diff, lo=lo, hi=hi))
  return rows


def markdown(rows: list[dict], base_path: str) -> str:
  out = [f"arm minus base ({base_path}), paired over scenes: mean [95% interval]", "",
         "| arm | case | length | metric | base | arm | arm - base |", "|---|---|---|---|---:|---:|---:|"]
  for r in rows:
    sep = "" if r["lo"] <= 0 <= r["hi"] else " *"
    out.append(f"| {r['arm']} | {r['case']} | {r['length']} | {r['metric']} | {r['base']:.2f} | "
               f"{r['arm_mean']:.2f} | {r['diff']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}]{sep} |")
  out += ["", "* = the interval excludes 0 (the arms separate)."]
  return "\n".join(out) + "\n"


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("results", nargs="+", help="results.json of `realcam eval`; the first is the base")
  p.add_argument("--system", default="student", help="system to compare (default student)")
  p.add_argument("--metrics", default="psnr,psnr_object", help="per-scene metrics (comma-separated)")
  p.add_argument("--bootstrap-samples", type=int, default=stats.BOOTSTRAP_SAMPLES)
  p.add_argument("--out", help="also write the table here (markdown)")
  a = p.parse_args(argv)
  if len(a.results) < 2:
    p.error("give a base and at least one arm")
  runs = [(path, _load(path)) for path in a.results]
  if a.system not in runs[0][1].get("results", {}):
    p.error(f"{a.results[0]!r} has no system {a.system!r}")
  text = markdown(compare(runs, a.system, a.metrics.split(","), a.bootstrap_samples), a.results[0])
  sys.stdout.write(text)
  if a.out:
    with open(a.out, "w") as f:
      f.write(text)


if __name__ == "__main__":
  main()

"""Regenerates docs/benchmarks.md from the benchmark records in docs/results/*.json.

  python launch/make_benchmarks_doc.py            # rewrite docs/benchmarks.md
  python launch/make_benchmarks_doc.py --check    # exit 1 if it differs (CI)

Section order, texts and the command behind each record: realcam_jax/bench/benchdoc.py.
Records are written by the benchmarks' `--results FILE` options (or converted with
launch/record_results.py); never edit the markdown by hand.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
RESULTS = os.path.join(ROOT, "docs", "results")


def generate(results_dir: str) -> str:
  from realcam_jax.bench import benchdoc, record
  return benchdoc.render(record.load_records(results_dir))


def check(text: str, doc: str) -> int:
  """0 if `doc` holds exactly `text`; else prints a diff and returns 1."""
  current = open(doc).read() if os.path.exists(doc) else ""
  if current == text:
    print(f"{doc} is up to date")
    return 0
  diff = difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                              fromfile=doc, tofile="generated")
  sys.stdout.writelines(list(diff)[:60])
  print(f"\n{doc} differs from what docs/results generates; run "
        "python launch/make_benchmarks_doc.py", file=sys.stderr)
  return 1


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--results-dir", default=RESULTS, help="folder of records (docs/results)")
  p.add_argument("--out", default=DOC, help="the document (docs/benchmarks.md)")
  p.add_argument("--check", action="store_true", help="compare instead of writing; 1 if stale")
  args = p.parse_args(argv)
  text = generate(args.results_dir)
  if args.check:
    return check(text, args.out)
  with open(args.out, "w") as f:
    f.write(text)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

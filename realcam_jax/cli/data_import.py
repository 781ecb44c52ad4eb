"""`realcam data import FORMAT`: real multi-camera datasets into the synthetic record format.

  realcam data import multicamvideo --src MultiCamVideo-Dataset --out DATA --size 480x832 \\
      --frames 81 [--pairs all | --pairs random --pairs-per-scene 4 --seed 0] [--split val]

Multi-host: run it on every host with --process-index/--process-count (default: this JAX
process of all); each imports a disjoint set of scene chunks, process 0 writes the
dataset when every chunk is done (rerun it if it finished first). Interrupted runs
resume where they stopped when rerun with the same arguments.
"""

from __future__ import annotations

import re
import sys

from realcam_jax.cli import UserError

FORMATS = ("multicamvideo",)


def _parse_size(text: str) -> tuple[int, int]:
  m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
  if not m or min(int(m.group(1)), int(m.group(2))) < 1:
    raise UserError(f"--size {text!r}: expected HEIGHTxWIDTH in pixels, e.g. 480x832")
  return int(m.group(1)), int(m.group(2))


def add_import_arguments(p):
  p.add_argument("format", choices=FORMATS, help="source dataset format")
  p.add_argument("--src", required=True, metavar="DIR", help="MultiCamVideo-Dataset root "
                 "(holding train/ and val/)")
  p.add_argument("--out", required=True, metavar="DIR", help="dataset directory to write")
  p.add_argument("--size", required=True, metavar="HxW", help="frame size after the centre "
                 "crop and resize, e.g. 480x832")
  p.add_argument("--frames", type=int, default=81, help="first N frames per video (default 81)")
  p.add_argument("--split", default="train", choices=("train", "val"),
                 help="source split (val is written as 'validation')")
  p.add_argument("--pairs", default="all", choices=("all", "random"),
                 help="all ordered camera pairs per scene, or k random ones")
  p.add_argument("--pairs-per-scene", type=int, default=4, metavar="K",
                 help="pairs per scene with --pairs random (default 4)")
  p.add_argument("--seed", type=int, default=0, help="seed of the random pairs")
  p.add_argument("--focal-mm", type=float, default=0.0, help="focal length for scenes "
                 "without an fNN_aperture folder (val)")
  p.add_argument("--metadata", default=None, metavar="CSV", help="captions file (default: "
                 "SRC/<split>/metadata.csv or SRC/metadata.csv)")
  p.add_argument("--scenes-per-shard", type=int, default=16, metavar="S",
                 help="scenes per record shard (the unit of resumption, default 16)")
  p.add_argument("--process-index", type=int, default=None)
  p.add_argument("--process-count", type=int, default=None)


def run_import(args, overrides) -> int:
  from tqdm import tqdm

  from realcam_jax.data import multicam as mc
  from realcam_jax.data import multicam_import
  if overrides:
    raise UserError(f"realcam data import takes no --config overrides, got {overrides[0]}")
  height, width = _parse_size(args.size)
  index, count = args.process_index, args.process_count
  if index is None or count is None:
    import jax
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
  settings = mc.ImportSettings(height=height, width=width, frames=args.frames, pairs=args.pairs,
                               pairs_per_scene=args.pairs_per_scene, seed=args.seed,
                               split=args.split, focal_mm=args.focal_mm,
                               scenes_per_shard=args.scenes_per_shard)
  bars = []

  def progress_factory(total):
    bars.append(tqdm(total=total, unit="scene", desc="importing", file=sys.stderr))
    return lambda: bars[0].update(1)

  try:
    summary = multicam_import.run_import(
        args.src, args.out, settings, process_index=index, process_count=count,
        metadata=args.metadata, log=lambda line: tqdm.write(line, file=sys.stderr),
        progress_factory=progress_factory)
  except mc.ImportError_ as e:
    raise UserError(str(e)) from None
  except KeyboardInterrupt:
    print(f"interrupted: finished chunks are kept in {args.out}; rerun the same command to "
          "resume", file=sys.stderr)
    return 130
  finally:
    for bar in bars:
      bar.close()
  if summary.records == 0 and not summary.pending_chunks:
    raise UserError(f"no scene could be imported, nothing was written: {summary.line()}")
  print(f"{'done' if summary.finished else 'this process is done'} in {summary.seconds:.0f} s: "
        f"{summary.line()}")
  if summary.finished:
    print(f"dataset: {args.out}; next: realcam text encode --captions {args.out} ... and "
          f"realcam data encode --dataset {args.out} ...")
  return 0

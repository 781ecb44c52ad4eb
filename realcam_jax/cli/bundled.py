"""The demo checkpoints bundled with the repository, and how the CLI picks its weights.

`realcam demo`, `realcam render` and `realcam serve` load the bundled student and VAE
when they run the demo config (their default) and no `--student` / `--vae` is given;
`--random-weights` asks for random weights instead (a smoke run: the output is noise).
With any other `--config`, weights not given are random (with a loud warning), since
the bundled ones belong to the demo config.
"""

from __future__ import annotations

import os

from realcam_jax.cli import UserError

DEMO_CONFIG = "student:demo"
# name -> (relative path under the repository root, how to get it)
DEFAULT_CHECKPOINTS = {
    "student": ("checkpoints/student_demo",
                "train it with `python launch/train_demo.py` (all demo stages, resumable; "
                "`--until student`)"),
    "vae": ("checkpoints/vae_demo",
            "train it with `python launch/train_demo.py --until vae`"),
}


def repo_root() -> str:
  """The repository this package is installed from (editable install)."""
  import realcam_jax
  return os.path.dirname(os.path.dirname(os.path.abspath(realcam_jax.__file__)))


def add_weight_arguments(parser, default_config: str = DEMO_CONFIG):
  """--student / --vae / --random-weights (their help names the bundled defaults)."""
  parser.add_argument("--student", metavar="CKPT",
                      help=f"student checkpoint (training workdir or exported dir; default with "
                           f"--config {default_config}: {DEFAULT_CHECKPOINTS['student'][0]})")
  parser.add_argument("--vae", metavar="CKPT",
                      help=f"VAE checkpoint (default with --config {default_config}: "
                           f"{DEFAULT_CHECKPOINTS['vae'][0]})")
  parser.add_argument("--random-weights", action="store_true",
                      help="random student and VAE (a smoke run: the output is noise)")


def checkpoint_paths(args, *, bundled: bool = True) -> tuple[str | None, str | None]:
  """(student, vae) checkpoint paths; None = random weights.

  Given paths win; otherwise the bundled checkpoints when `bundled` (the demo config),
  else None. UserError for --random-weights with paths, or a missing bundled checkpoint.
  """
  if getattr(args, "random_weights", False):
    if args.student or args.vae:
      raise UserError("--random-weights cannot be combined with --student / --vae")
    return None, None
  paths = []
  for name in ("student", "vae"):
    given = getattr(args, name)
    if given or not bundled:
      paths.append(given or None)
      continue
    rel, how = DEFAULT_CHECKPOINTS[name]
    path = os.path.join(repo_root(), rel)
    if not os.path.isdir(path):
      raise UserError(f"the demo {name} checkpoint {path} is missing: {how}; or pass --{name} "
                      f"CKPT, or --random-weights for a smoke run with random weights")
    paths.append(path)
  return paths[0], paths[1]

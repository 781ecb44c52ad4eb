"""`realcam` command line: one module per subcommand in this package.

Each subcommand module defines `HELP` (one line), `add_arguments(parser)` and
`run(args, config_overrides) -> int`. Register it in `SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

# name -> module (relative to this package). Keep in the order `--help` shows them.
SUBCOMMANDS = {
    "convert": "convert",
    "camera": "camera",
    "data": "data",
    "text": "text",
    "render": "render",
    "eval": "eval",
    "serve": "serve",
    "demo": "demo",
    "bench": "bench",
}


class UserError(Exception):
  """Bad input from the user: printed as one line, exit status 2, no traceback."""


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
  parser = argparse.ArgumentParser(
      prog="realcam",
      description="RealCam in JAX: real-time novel-view video generation with camera control.",
      epilog="Config overrides: append --config.a.b=value to any subcommand that takes --config.")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND")
  modules = {}
  for name, mod_name in SUBCOMMANDS.items():
    mod = importlib.import_module(f"{__name__}.{mod_name}")
    p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
    mod.add_arguments(p)
    modules[name] = mod
  return parser, modules


def main(argv=None) -> int:
  from realcam_jax.config import ConfigError, split_overrides
  argv = list(sys.argv[1:] if argv is None else argv)
  argv, overrides = split_overrides(argv)
  parser, modules = build_parser()
  args = parser.parse_args(argv)
  args.command_line = shlex.join(["realcam", *argv, *overrides])  # for reports
  if not args.command:
    parser.print_help()
    return 0
  try:
    return int(modules[args.command].run(args, overrides) or 0)
  except (UserError, ConfigError) as e:
    print(f"realcam {args.command}: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())

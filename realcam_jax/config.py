"""The one config system: `ml_collections` files in `configs/`, variants by argument.

A config is named `FILE[:ARG]`, where FILE is a path to a python file
(`configs/teacher.py`) or the bare name of a module in the bundled `configs`
package (`teacher`). The file defines `get_config(arg=None) -> ConfigDict`.
Overrides are `--config.a.b=value` strings; the value is parsed as a python
literal when it can be (numbers, tuples, booleans, None), else kept as a string,
and must match the type of the field it replaces.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
from typing import Iterable, Sequence

import ml_collections

ConfigDict = ml_collections.ConfigDict


class ConfigError(ValueError):
  """A config name, file or override the user gave is not valid."""


def _load_module(file_part: str):
  if file_part.endswith(".py") or os.sep in file_part or "/" in file_part:
    path = os.path.abspath(file_part)
    if not os.path.isfile(path):
      raise ConfigError(f"config file {file_part!r} does not exist")
    name = "realcam_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
  try:
    return importlib.import_module(f"configs.{file_part}")
  except ModuleNotFoundError as e:
    raise ConfigError(
        f"unknown config {file_part!r}: expected a path to a .py file or one of "
        f"{sorted(bundled_configs())}") from e


def bundled_configs() -> list[str]:
  import configs
  here = os.path.dirname(configs.__file__)
  return [f[:-3] for f in os.listdir(here)
          if f.endswith(".py") and not f.startswith("_") and f != "common.py"]


def get_config(name: str, overrides: Sequence[str] = ()) -> ConfigDict:
  """Loads `FILE[:ARG]` and applies `--config.x.y=v` overrides."""
  file_part, _, arg = name.partition(":")
  module = _load_module(file_part)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {file_part!r} has no get_config(arg) function")
  config = module.get_config(arg or None)
  apply_overrides(config, overrides)
  return config


def _parse_value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(config: ConfigDict, overrides: Iterable[str]) -> ConfigDict:
  """Applies overrides like `--config.model.num_layers=2` (or `model.num_layers=2`)."""
  for item in overrides:
    text = item[2:] if item.startswith("--") else item
    if text.startswith("config."):
      text = text[len("config."):]
    key, eq, value = text.partition("=")
    if not eq:
      raise ConfigError(f"override {item!r} must look like --config.a.b=value")
    *parents, leaf = key.split(".")
    node = config
    for i, p in enumerate(parents):
      if p not in node:
        raise ConfigError(f"override {item!r}: config has no field {'.'.join(parents[:i+1])!r}")
      node = node[p]
    if leaf not in node:
      raise ConfigError(
          f"override {item!r}: config section {'.'.join(parents) or '<root>'!r} has no field "
          f"{leaf!r}; fields are {sorted(node.keys())}")
    old = node[leaf]
    new = _parse_value(value)
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
      new = type(old)(new)
    elif isinstance(old, float) and isinstance(new, int) and not isinstance(new, bool):
      new = float(new)
    elif old is not None and not isinstance(old, ConfigDict) and type(new) is not type(old):
      raise ConfigError(
          f"override {item!r}: field {key!r} is a {type(old).__name__} "
          f"(now {old!r}), got {type(new).__name__} {new!r}")
    with node.ignore_type():
      node[leaf] = new
  return config


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """Splits argv into (other args, `--config.*=` overrides)."""
  rest, overrides = [], []
  for a in argv:
    (overrides if a.startswith("--config.") else rest).append(a)
  return rest, overrides


def to_json(config: ConfigDict) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def from_json(text: str) -> ConfigDict:
  return ConfigDict(json.loads(text))

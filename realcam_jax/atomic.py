"""Outputs that appear complete or not at all.

`atomic_dir(out)` yields a temporary sibling directory to fill; when the block ends
without an exception the temporary directory is renamed to `out` (an existing `out` is
moved aside first and deleted only after the rename succeeded, so a failure puts it
back). `atomic_file(path, write)` does the same for one file. Both write next to the
target so the final rename never crosses a file system.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Callable, IO, Iterator


@contextlib.contextmanager
def atomic_dir(out_dir: str, mode: int = 0o755) -> Iterator[str]:
  """Yields a temporary directory that replaces `out_dir` when the block succeeds."""
  out_dir = os.path.abspath(out_dir)
  parent, name = os.path.split(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
  old = None
  try:
    yield tmp
    os.chmod(tmp, mode)   # mkdtemp directories are 0700
    if os.path.lexists(out_dir):
      old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
      os.rename(out_dir, os.path.join(old, name))
    os.rename(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    if old is not None and not os.path.lexists(out_dir):
      os.rename(os.path.join(old, name), out_dir)   # put the previous output back
    raise
  finally:
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)


def atomic_file(path: str, write: Callable[[IO[bytes]], object], mode: int = 0o644):
  """Calls `write(f)` on a binary file next to `path`, then renames it to `path`."""
  folder, name = os.path.split(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
    os.chmod(tmp, mode)   # mkstemp files are 0600
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def remove_partial(folder: str) -> list[str]:
  """Deletes the temporary siblings (`.NAME.tmp-*`, `.NAME.*.part`) that a killed writer
  left in `folder`; returns their names. Only for a folder with a single writer."""
  if not os.path.isdir(folder):
    return []
  stale = [n for n in os.listdir(folder)
           if n.startswith(".") and (".tmp-" in n or n.endswith(".part"))]
  for n in stale:
    p = os.path.join(folder, n)
    shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.unlink(p)
  return sorted(stale)

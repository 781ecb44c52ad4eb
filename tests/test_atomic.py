"""realcam_jax.atomic: outputs appear complete or not at all."""

import os
import stat

import pytest

from realcam_jax.atomic import atomic_dir, atomic_file, remove_partial


def _siblings(path):
  return sorted(os.listdir(os.path.dirname(path)))


def test_atomic_dir_creates_and_replaces(tmp_path):
  out = str(tmp_path / "sub" / "out")
  with atomic_dir(out) as d:
    assert not os.path.exists(out)          # nothing visible while writing
    open(os.path.join(d, "a.txt"), "w").write("one")
  assert open(os.path.join(out, "a.txt")).read() == "one"
  assert stat.S_IMODE(os.stat(out).st_mode) == 0o755
  with atomic_dir(out) as d:
    open(os.path.join(d, "b.txt"), "w").write("two")
  assert os.listdir(out) == ["b.txt"]       # replaced, not merged
  assert _siblings(out) == ["out"]          # no temporary or old directories left


def test_atomic_dir_failure_keeps_previous_output(tmp_path):
  out = str(tmp_path / "out")
  with atomic_dir(out) as d:
    open(os.path.join(d, "a.txt"), "w").write("one")
  with pytest.raises(KeyboardInterrupt):
    with atomic_dir(out) as d:
      open(os.path.join(d, "half.txt"), "w").write("half")
      raise KeyboardInterrupt
  assert os.listdir(out) == ["a.txt"]
  assert _siblings(out) == ["out"]


def test_atomic_dir_failure_without_previous_output_leaves_nothing(tmp_path):
  out = str(tmp_path / "out")
  with pytest.raises(ValueError):
    with atomic_dir(out):
      raise ValueError("boom")
  assert os.listdir(tmp_path) == []


def test_atomic_file(tmp_path):
  path = str(tmp_path / "f.bin")
  atomic_file(path, lambda f: f.write(b"abc"))
  assert open(path, "rb").read() == b"abc"
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o644

  def fail(f):
    f.write(b"partial")
    raise OSError("disk full")

  with pytest.raises(OSError, match="disk full"):
    atomic_file(path, fail)
  assert open(path, "rb").read() == b"abc"
  assert os.listdir(tmp_path) == ["f.bin"]


def test_remove_partial_deletes_only_what_a_killed_writer_left(tmp_path):
  (tmp_path / ".shard_00001.tmp-abc").mkdir()
  (tmp_path / ".shard_00001.tmp-abc" / "x.npy").write_bytes(b"half")
  (tmp_path / ".f.bin.xyz.part").write_bytes(b"half")
  (tmp_path / "shard_00000").mkdir()
  (tmp_path / ".hidden").write_text("keep")
  assert remove_partial(str(tmp_path)) == [".f.bin.xyz.part", ".shard_00001.tmp-abc"]
  assert sorted(os.listdir(tmp_path)) == [".hidden", "shard_00000"]
  assert remove_partial(str(tmp_path / "missing")) == []

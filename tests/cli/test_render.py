"""`realcam render` on the tiny config (random weights) and its bad-input errors."""

import os

import numpy as np
import pytest

from realcam_jax.cli import main
from realcam_jax.inference import video_io

CLIP = os.path.join(os.path.dirname(__file__), "..", "inference", "data",
                    "recammaster_4_160x90_12f.mp4")
TINY = ["--config", "student:tiny", "--size", "16x16"]


def _render(tmp_path, *extra, video=CLIP, trajectory="pan_right", name="out.mp4"):
  out = tmp_path / name
  rc = main(["render", "--video", str(video), "--trajectory", trajectory, "--out", str(out),
             *TINY, *extra])
  return rc, out


def test_render_writes_the_video_with_the_source_length(tmp_path, capsys):
  # The clip has 12 frames at 30 fps -> 6 frames at 15 fps; the first chunk of the tiny
  # student (K = 3) takes 9 frames, so 3 padded frames are generated and dropped.
  rc, out = _render(tmp_path, "--side-by-side")
  assert rc == 0
  cap = capsys.readouterr()
  assert "random weights: output is noise" in cap.err
  assert f"wrote {out}" in cap.out
  frames, fps = video_io.read_video(out)
  assert frames.shape == (6, 16, 16 + 2 + 16, 3) and fps == 15
  assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary file left


def test_render_short_camera_file_holds_the_last_pose(tmp_path, capsys):
  from realcam_jax.camera import io
  from realcam_jax.camera.presets import get_trajectory
  cams = tmp_path / "cams.json"
  io.write_cameras(str(cams), {"cam": io.CameraTrack(get_trajectory("pan_right", 3))})
  rc, out = _render(tmp_path, "--fps", "10", trajectory=str(cams))
  assert rc == 0
  err = capsys.readouterr().err
  assert "holding its last pose" in err
  frames, fps = video_io.read_video(out)
  assert frames.shape == (4, 16, 16, 3) and fps == 10


@pytest.mark.parametrize("case,expect", [
    ("missing", "does not exist"),
    ("empty", "is empty"),
    ("garbage", "is not a readable video"),
    ("preset", "neither a camera file nor a preset"),
    ("cams", "neither a camera file nor a preset"),
    ("size", "--size"),
    ("ext", "expected a name ending in"),
])
def test_bad_input_exits_2_without_output(tmp_path, capsys, case, expect):
  video, trajectory, extra = CLIP, "pan_right", []
  if case == "missing":
    video = tmp_path / "nope.mp4"
  elif case == "empty":
    video = tmp_path / "empty.mp4"
    video.write_bytes(b"")
  elif case == "garbage":
    video = tmp_path / "garbage.mp4"
    video.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
  elif case == "preset":
    trajectory = "fly_to_the_moon"
  elif case == "cams":
    trajectory = str(tmp_path / "missing_cams.json")
  elif case == "size":
    extra = ["--size", "15x16"]
  name = "out.avi" if case == "ext" else "out.mp4"
  before = set(os.listdir(tmp_path))
  if case == "size":
    rc = main(["render", "--video", str(video), "--trajectory", trajectory, "--out",
               str(tmp_path / name), "--config", "student:tiny", *extra])
  else:
    rc, _ = _render(tmp_path, video=video, trajectory=trajectory, name=name)
  assert rc == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith("realcam render: error:") and expect in err[-1], err
  assert set(os.listdir(tmp_path)) == before


def test_load_models_from_orbax_dirs_and_training_workdirs(tmp_path):
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from realcam_jax.ckpt import orbax_io
  from realcam_jax.ckpt.manager import Checkpointer
  from realcam_jax.config import get_config
  from realcam_jax.inference.load import LoadError, load_models
  from realcam_jax.models import vae as vae_lib
  from realcam_jax.models.realcam import RealCamDiT
  from realcam_jax.train import state as st

  config = get_config("student:tiny")
  _, params = st.split_model(RealCamDiT(config.model, rngs=nnx.Rngs(5)))
  vae_config = get_config("vae:tiny")
  vae = vae_lib.create_vae(vae_config.model, seed=3)
  orbax_io.save_state(str(tmp_path / "student"), params, config)
  orbax_io.save_state(str(tmp_path / "vae"), nnx.state(vae), vae_config)

  def same(a, b, scale=1):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
      np.testing.assert_array_equal(scale * np.asarray(x), np.asarray(y))

  _, _, p2, v2 = load_models(str(tmp_path / "student"), str(tmp_path / "vae"), config)
  same(params, p2)
  same(nnx.state(vae), nnx.state(v2))
  # A DMD training workdir: the EMA generator params are used.
  ckpt = Checkpointer(str(tmp_path / "work" / "dmd" / "ckpt"), with_data=False,
                      async_save=False)
  ckpt.save(4, {"step": jnp.zeros((), jnp.int32), "gen_params": params,
                "ema_params": jax.tree.map(lambda x: 2 * x, params)}, {})
  ckpt.close()
  _, _, p3, _ = load_models(str(tmp_path / "work"), None, config)
  same(params, p3, scale=2)
  with pytest.raises(LoadError, match="is not a checkpoint"):
    load_models(str(tmp_path), None, config)
  with pytest.raises(LoadError, match="does not exist"):
    load_models(None, str(tmp_path / "nope"), config)


@pytest.mark.parametrize("argv, want", [
    ([], "bundled"),                                   # the demo config: bundled weights
    (["--config", "student:tiny"], "random"),          # another config: random weights
    (["--random-weights"], "random"),
    (["--student", "S", "--vae", "V"], ("S", "V")),
])
def test_render_and_serve_default_to_the_bundled_checkpoints(monkeypatch, argv, want):
  import argparse

  from realcam_jax.cli import bundled
  from realcam_jax.cli import render as render_cli
  from realcam_jax.inference import load as load_lib
  seen = {}
  monkeypatch.setattr(load_lib, "load_models",
                      lambda s, v, config, **kw: seen.update(paths=(s, v)) or (config,) * 4)
  p = argparse.ArgumentParser()
  render_cli.add_model_arguments(p)
  render_cli.load(p.parse_args(argv), config=None)
  root = bundled.repo_root()
  expect = {"bundled": tuple(os.path.join(root, bundled.DEFAULT_CHECKPOINTS[n][0])
                             for n in ("student", "vae")),
            "random": (None, None)}.get(want, want)
  assert seen["paths"] == expect

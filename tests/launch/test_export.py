"""`launch/export.py`: training workdir -> params-only inference checkpoint."""

import importlib.util
import json
import os
import pathlib

import jax
import numpy as np
from flax import nnx

from realcam_jax.ckpt.manager import Checkpointer
from realcam_jax.config import get_config, to_json
from realcam_jax.inference import load
from realcam_jax.models.realcam import RealCamDiT
from realcam_jax.train import state as st

_PATH = pathlib.Path(__file__).resolve().parents[2] / "launch" / "export.py"
_spec = importlib.util.spec_from_file_location("realcam_launch_export", _PATH)
export = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(export)


def _workdir(path, config, seed, step):
  _, params = st.split_model(RealCamDiT(config.model, rngs=nnx.Rngs(seed)))
  opt = jax.tree.map(lambda x: x + 1.0, params)        # stands in for the optimizer state
  ckpt = Checkpointer(str(path / "ckpt"), with_data=False)
  ckpt.save(step, st.TrainState(step=np.int32(step), params=params, opt_state=(opt,)),
            json.loads(to_json(config)), force=True)
  ckpt.close()
  return params


def test_teacher_export_round_trip_and_refusals(tmp_path, capsys):
  config = get_config("teacher:tiny,prefix")
  params = _workdir(tmp_path / "w", config, seed=3, step=6)
  out = tmp_path / "export"
  rc = export.main(["--config", "teacher:tiny,prefix", "--workdir", str(tmp_path / "w"),
                    "--out", str(out)])
  assert rc == 0, capsys.readouterr().err
  assert sorted(os.listdir(out)) == ["config.json", "meta.json", "state"]
  meta = json.load(open(out / "meta.json"))
  assert (meta["kind"], meta["step"], meta["layout"]) == ("teacher", 6, "prefix")
  cfg, _, loaded = load.load_teacher(str(out), get_config("teacher:tiny"))
  assert cfg.model.layout == "prefix"                    # the saved config wins
  # `realcam eval` reports the step of the weights it evaluates.
  from realcam_jax.eval import systems
  from realcam_jax.models.vae import create_vae
  vae = create_vae(get_config("vae:tiny").model, seed=0)
  got = systems.load_systems(config, ["prefix", "copy_source"], {"prefix": str(out)}, vae)
  assert got["prefix"].info["step"] == 6 and "step" not in got["copy_source"].info
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  # Params only: the export is smaller than the workdir with its optimizer state.
  size = lambda p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file())  # noqa: E731
  assert size(out) < 0.8 * size(tmp_path / "w")

  # An existing export is kept without --force; a missing workdir writes nothing.
  before = sorted(p.name for p in out.rglob("*"))
  assert export.main(["--config", "teacher:tiny", "--workdir", str(tmp_path / "w"),
                      "--out", str(out)]) == 2
  assert sorted(p.name for p in out.rglob("*")) == before
  assert export.main(["--config", "teacher:tiny", "--workdir", str(tmp_path / "nope"),
                      "--out", str(tmp_path / "e2")]) == 2
  assert not (tmp_path / "e2").exists()
  err = capsys.readouterr().err
  assert "already exists" in err or "not empty" in err or "--force" in err, err
  assert "does not exist" in err


def test_student_export_prefers_the_latest_stage(tmp_path):
  config = get_config("student:tiny")
  _workdir(tmp_path / "w" / "ode_init", config.teacher, seed=1, step=4)
  out = tmp_path / "student"
  assert export.main(["--config", "student:tiny", "--workdir", str(tmp_path / "w"),
                      "--out", str(out)]) == 0
  meta = json.load(open(out / "meta.json"))
  assert (meta["kind"], meta["step"]) == ("student", 4)
  _, _, got = load.load_student(str(out), config)
  _, _, want = load.load_student(str(tmp_path / "w"), config)
  jax.tree.map(np.testing.assert_array_equal, got, want)
  assert load.checkpoint_step(str(out)) == 4                  # from meta.json
  assert load.checkpoint_step(str(tmp_path / "w")) == 4       # the newest stage checkpoint
  _workdir(tmp_path / "w" / "dmd", config.teacher, seed=2, step=9)
  assert load.checkpoint_step(str(tmp_path / "w")) == 9       # DMD before ODE init
  assert load.checkpoint_step(str(tmp_path / "w" / "dmd" / "ckpt")) == 9
  assert load.checkpoint_step(str(tmp_path / "missing")) is None
  assert load.checkpoint_step(None) is None

"""`train.init_from`: the teacher starts from a converted Wan2.1 DiT checkpoint."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx

from realcam_jax import sharding
from realcam_jax.ckpt import dit_weights, orbax_io
from realcam_jax.ckpt.orbax_io import CheckpointError
from realcam_jax.cli import main as cli_main
from realcam_jax.config import get_config
from realcam_jax.models import layout
from realcam_jax.models.dit import WanDiT
from realcam_jax.train import run, teacher
from realcam_jax.train import state as st

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _wan_abstract(model_cfg):
  return nnx.state(nnx.eval_shape(lambda: WanDiT(model_cfg, rngs=nnx.Rngs(0))))


def _torch_shape(path, shape):
  """Our shape -> the torch (diffusers) shape (as in tests/ckpt/test_convert_dit.py)."""
  if path.endswith("/kernel") and len(shape) == 2:
    return shape[::-1]
  if path.endswith("/kernel") and len(shape) == 5:
    return (shape[4], shape[3]) + tuple(shape[:3])
  return shape


def _diffusers_tensors(model_cfg, seed=0):
  """Random tensors with the diffusers names and torch shapes of the bare WanDiT."""
  r = np.random.default_rng(seed)
  out = {}
  for path, var in nnx.to_flat_state(_wan_abstract(model_cfg)):
    path, shape = "/".join(path), var.get_value().shape
    layers = range(shape[0]) if path.startswith("blocks/") else [None]
    for layer in layers:
      want = shape[1:] if layer is not None else shape
      out[dit_weights.diffusers_source_name(path, layer)] = (
          0.5 * r.standard_normal(_torch_shape(path, want))).astype(np.float32)
  return out


@pytest.fixture(scope="module")
def wan_ckpt(tmp_path_factory):
  """`realcam convert --model dit` of a random tiny diffusers file: (dir, its WanDiT state)."""
  tmp = tmp_path_factory.mktemp("wan")
  weights = tmp / "diffusion_pytorch_model.safetensors"
  safetensors.numpy.save_file(_diffusers_tensors(get_config("dit:tiny").model), str(weights))
  out = tmp / "wan2.1-tiny"
  assert cli_main(["convert", "--model", "dit", "--format", "diffusers", "--weights",
                   str(weights), "--config", "dit:tiny", "--out", str(out)]) == 0
  state = orbax_io.load_state(str(out), _wan_abstract(get_config("dit:tiny").model))
  return str(out), state


def _teacher_config(init_from="", arg="tiny,source_skip"):
  config = get_config(f"teacher:{arg}")
  config.train.init_from = init_from
  return config


def _flat(params):
  return {tuple(str(k) for k in p): np.asarray(jax.device_get(v.get_value()))
          for p, v in nnx.to_flat_state(params)}


def test_backbone_from_file_realcam_layers_from_seed(wan_ckpt):
  ckpt, wan_state = wan_ckpt
  mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2, context=1))
  _, state, state_sh, _ = teacher.init(_teacher_config(ckpt), mesh)
  _, plain, _, _ = teacher.init(_teacher_config(""), mesh)
  got, seed, wan = _flat(state.params), _flat(plain.params), _flat(wan_state)

  # (a) every Wan parameter comes from the file, and the file holds nothing else.
  paths = teacher.wan_param_paths(_teacher_config().model)
  assert paths == set(wan)
  for p, value in wan.items():
    np.testing.assert_array_equal(got[("backbone",) + p], value, err_msg="/".join(p))
    assert not np.array_equal(value, seed[("backbone",) + p]), p   # really replaced
  # (b) the RealCam-only parameters are the plain seed init (zeros).
  own = sorted(p for p in got if p[0] != "backbone" or p[1:] not in paths)
  assert ("stream_embed",) in own and ("backbone", "blocks", "cond_proj", "kernel") in own
  assert ("source_skip", "kernel") in own
  for p in own:
    np.testing.assert_array_equal(got[p], seed[p], err_msg="/".join(p))
    assert not np.any(got[p]), p
  # Shardings are those of create_sharded; the optimizer starts afresh.
  is_sh = lambda x: isinstance(x, jax.sharding.Sharding)  # noqa: E731
  for arr, sh in zip(jax.tree.leaves(state.params), jax.tree.leaves(state_sh.params,
                                                                    is_leaf=is_sh)):
    assert arr.sharding.is_equivalent_to(sh, arr.ndim)
  assert int(state.step) == 0
  for leaf in jax.tree.leaves(state.opt_state):
    assert not np.any(np.asarray(leaf))


@pytest.mark.parametrize("arg", ["tiny,source_skip", "tiny,prefix"])
def test_zero_init_realcam_equals_bare_wan(wan_ckpt, arg):
  """(c) With zero camera projection, stream embedding and skip, RealCamDiT on (source,
  target) is WanDiT on the combined sequence: sources at timestep 0, the layout's frame
  order and RoPE positions; the camera input changes nothing."""
  ckpt, wan_state = wan_ckpt
  config = _teacher_config(ckpt, arg)
  mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1, context=1), jax.devices()[:1])
  graphdef, state, _, _ = teacher.init(config, mesh)
  model = st.merge(graphdef, jax.device_get(state.params))
  wan = nnx.merge(nnx.graphdef(nnx.eval_shape(
      lambda: WanDiT(get_config("dit:tiny").model, rngs=nnx.Rngs(0)))), wan_state)

  m = config.model
  b, f, h, w = 2, 3, 4, 4
  ks = jax.random.split(jax.random.key(1), 5)
  src = jax.random.normal(ks[0], (b, f, h, w, m.in_channels))
  tgt = jax.random.normal(ks[1], (b, f, h, w, m.in_channels))
  sigma = jax.random.uniform(ks[2], (b, f))
  camera = jax.random.normal(ks[3], (b, f, 12))
  text = jax.random.normal(ks[4], (b, m.text_len, m.text_dim))

  got = model(src, tgt, sigma, camera, text)
  x = layout.combine(src, tgt, m.layout)
  t = layout.combine(jnp.zeros((b, f)), sigma * 1000.0, m.layout)
  want = wan(x, t, text, frame_pos=layout.frame_positions(f, m.layout, m.pair_rope))
  assert float(jnp.abs(want).max()) > 1e-2                       # a non-trivial output
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
  moved = model(src, tgt, sigma, camera + 3.0, text)
  np.testing.assert_array_equal(np.asarray(moved), np.asarray(got))


def test_bad_init_from_is_a_clear_error(wan_ckpt, tmp_path):
  ckpt, _ = wan_ckpt
  mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1, context=1), jax.devices()[:1])
  missing = str(tmp_path / "nope")
  with pytest.raises(CheckpointError, match=r"train.init_from: .*nope' does not exist"):
    teacher.init(_teacher_config(missing), mesh)
  weights = tmp_path / "w.safetensors"
  weights.write_bytes(b"x")
  with pytest.raises(CheckpointError, match="is a file.*convert it first"):
    teacher.init(_teacher_config(str(weights)), mesh)
  (tmp_path / "workdir" / "ckpt").mkdir(parents=True)
  with pytest.raises(CheckpointError, match="training workdir.*--workdir"):
    teacher.init(_teacher_config(str(tmp_path / "workdir")), mesh)

  # Wrong size: every mis-shaped parameter with both shapes, and the config fields.
  config = _teacher_config(ckpt)
  config.model.ffn_dim = 48
  with pytest.raises(CheckpointError) as e:
    teacher.init(config, mesh)
  msg = str(e.value)
  assert "0 missing, 0 unexpected, 3 mis-shaped" in msg
  assert "blocks/ffn/fc1/kernel: checkpoint [2, 32, 64], model [2, 32, 48]" in msg
  assert "blocks/ffn/fc2/kernel: checkpoint [2, 64, 32], model [2, 48, 32]" in msg
  assert "ffn_dim=64" in msg and "ffn_dim=48" in msg

  # Missing and unexpected parameters (a checkpoint of another variant of the DiT).
  other = get_config("dit:tiny").model
  other.cross_attn_norm, other.block_cond_dim = False, 12
  odd = orbax_io.save_state(str(tmp_path / "odd"), nnx.state(WanDiT(other, rngs=nnx.Rngs(0))),
                            get_config("dit:tiny"))
  with pytest.raises(CheckpointError) as e:
    teacher.init(_teacher_config(odd), mesh)
  msg = str(e.value)
  assert "2 missing, 2 unexpected, 0 mis-shaped" in msg
  assert "blocks/norm2/scale: the model needs [2, 32]" in msg
  assert "blocks/cond_proj/kernel [2, 12, 32]: not a parameter of the Wan2.1 DiT" in msg


def _launch_train():
  spec = importlib.util.spec_from_file_location("launch_train_init",
                                                os.path.join(REPO, "launch", "train.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_training_from_wan_and_resume_ignores_init_from(wan_ckpt, tmp_path, capsys):
  """(e) A training step runs from the converted weights; a resumed run restores its own
  checkpoint and does not read init_from (here: a path that no longer exists)."""
  ckpt, _ = wan_ckpt
  config = _teacher_config(ckpt)
  _, first, info = run.run(config, str(tmp_path / "b"), num_steps=1)   # "killed" after step 1
  assert info["last_step"] == 1
  after_one = jax.device_get(first.params)
  gone = _teacher_config(str(tmp_path / "deleted"))
  _, resumed, info = run.run(gone, str(tmp_path / "b"), num_steps=2)
  assert info["last_step"] == 2
  assert "train.init_from=" in capsys.readouterr().out
  rows = [json.loads(l) for l in open(tmp_path / "b" / "metrics.jsonl")]
  assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
  # It continued from step 1's params (one more small step), not from a fresh init.
  delta = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()),
                       jax.device_get(resumed.params), after_one)
  assert 0 < max(jax.tree.leaves(delta)) < 0.1

  # The command line: a bad init_from is one error line, exit status 2.
  rc = _launch_train().main(["--config", "teacher:tiny", "--workdir",
                             str(tmp_path / "c"), "--num_steps", "1",
                             f"--config.train.init_from={tmp_path / 'deleted'}"])
  assert rc == 2
  assert "error: train.init_from:" in capsys.readouterr().err

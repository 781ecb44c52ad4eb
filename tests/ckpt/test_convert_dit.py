"""Weight conversion: error reporting, CLI round trip, file formats (no torch model needed)."""

import json
import os

import jax
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx

from realcam_jax import sharding
from realcam_jax.ckpt import convert_common, dit_weights, orbax_io
from realcam_jax.cli import main as cli_main
from realcam_jax.config import get_config
from realcam_jax.models.dit import WanDiT


def _abstract(name="dit:tiny"):
  cfg = get_config(name).model
  return nnx.state(nnx.eval_shape(lambda: WanDiT(cfg, rngs=nnx.Rngs(0))))


def _torch_shape(path, shape):
  """Our shape -> the torch (diffusers) shape of the same tensor."""
  if path.endswith("/kernel") and len(shape) == 2:
    return shape[::-1]
  if path.endswith("/kernel") and len(shape) == 5:  # [pt, ph, pw, C, D] -> [D, C, pt, ph, pw]
    return (shape[4], shape[3]) + tuple(shape[:3])
  return shape


def _diffusers_file_tensors(seed=0):
  """Random tensors with the diffusers names and torch shapes of the tiny model."""
  r = np.random.default_rng(seed)
  out = {}
  for path, var in nnx.to_flat_state(_abstract()):
    path = "/".join(path)
    shape = var.get_value().shape
    if path.startswith("blocks/"):
      for layer in range(shape[0]):
        name = dit_weights.diffusers_source_name(path, layer)
        out[name] = r.standard_normal(_torch_shape(path, shape[1:])).astype(np.float32)
    else:
      name = dit_weights.diffusers_source_name(path, None)
      out[name] = r.standard_normal(_torch_shape(path, shape)).astype(np.float32)
  return out


def _convert_cli(tmp_path, tensors, out="ckpt", *extra, fmt="diffusers"):
  weights = tmp_path / "w.safetensors"
  safetensors.numpy.save_file(tensors, str(weights))
  out = tmp_path / out
  rc = cli_main(["convert", "--format", fmt, "--weights", str(weights), "--config", "dit:tiny",
                 "--out", str(out), *extra])
  return rc, out


def test_names_look_like_diffusers():
  names = _diffusers_file_tensors()
  for k in ("blocks.1.attn1.to_q.weight", "blocks.0.attn2.norm_k.weight", "blocks.0.norm2.bias",
            "blocks.1.ffn.net.0.proj.weight", "blocks.0.scale_shift_table",
            "condition_embedder.time_embedder.linear_1.weight",
            "condition_embedder.text_embedder.linear_2.bias", "condition_embedder.time_proj.weight",
            "patch_embedding.weight", "proj_out.bias", "scale_shift_table"):
    assert k in names
  assert dit_weights.wan_source_name("blocks/norm2/scale", 3) == "blocks.3.norm3.weight"
  assert dit_weights.wan_source_name("proj_out/kernel", None) == "head.head.weight"
  assert (dit_weights.wan_rename("time_projection.1.weight")[0]
          == "condition_embedder/time_proj/kernel")


def test_bad_files_list_every_problem_and_write_nothing(tmp_path, capsys):
  tensors = _diffusers_file_tensors()
  del tensors["blocks.1.attn1.to_q.weight"], tensors["proj_out.bias"]
  tensors["blocks.0.attn1.foo.weight"] = np.zeros((2, 2), np.float32)
  tensors["vace_blocks.0.x"] = np.zeros((1,), np.float32)
  tensors["blocks.0.ffn.net.0.proj.weight"] = np.zeros((7, 32), np.float32)
  rc, out = _convert_cli(tmp_path, tensors)
  err = capsys.readouterr().err
  assert rc == 2
  assert "2 missing, 2 unexpected, 1 mis-shaped" in err
  for piece in ("blocks.1.attn1.to_q.weight", "proj_out.bias", "blocks.0.attn1.foo.weight",
                "vace_blocks.0.x", "blocks.0.ffn.net.0.proj.weight: expected [32, 64]",
                "got [32, 7] (file [7, 32])"):
    assert piece in err
  assert not out.exists()
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".ckpt")]  # no temp leftovers

  with pytest.raises(convert_common.ConversionError, match="blocks.1.attn1.to_q.weight"):
    convert_common.convert_state(tensors, dit_weights.diffusers_rename, _abstract(),
                                 source="t", source_name=dit_weights.diffusers_source_name)


def test_integer_tensor_is_a_dtype_error():
  tensors = _diffusers_file_tensors()
  tensors["proj_out.bias"] = tensors["proj_out.bias"].astype(np.int32)
  with pytest.raises(convert_common.ConversionError, match="proj_out.bias: dtype int32"):
    convert_common.convert_state(tensors, dit_weights.diffusers_rename, _abstract(), source="t")


def test_cli_round_trip_equals_source(tmp_path):
  tensors = _diffusers_file_tensors()
  rc, out = _convert_cli(tmp_path, tensors)
  assert rc == 0
  state = orbax_io.load_state(str(out), _abstract())
  np.testing.assert_array_equal(np.asarray(state["blocks"]["attn1"]["to_q"]["kernel"][...])[1],
                                tensors["blocks.1.attn1.to_q.weight"].T)
  np.testing.assert_array_equal(np.asarray(state["patch_embedding"]["kernel"][...]),
                                tensors["patch_embedding.weight"].transpose(2, 3, 4, 1, 0))
  flat = {"/".join(p): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}
  for key, value in tensors.items():
    path, fn, *layer = dit_weights.diffusers_rename(key)
    want = fn(value) if fn else value
    np.testing.assert_array_equal(flat[path][layer[0]] if layer else flat[path], want)
  assert orbax_io.load_config(str(out)).model.dim == 32
  assert orbax_io.load_meta(str(out))["format"] == "diffusers"

  # Refuses to overwrite without --force; replaces with it.
  assert _convert_cli(tmp_path, tensors)[0] == 2
  tensors["proj_out.bias"] = tensors["proj_out.bias"] + 1
  assert _convert_cli(tmp_path, tensors, "ckpt", "--force")[0] == 0
  state = orbax_io.load_state(str(out), _abstract())
  np.testing.assert_array_equal(np.asarray(state["proj_out"]["bias"][...]),
                                tensors["proj_out.bias"])


def test_load_into_sharded_target(tmp_path):
  rc, out = _convert_cli(tmp_path, _diffusers_file_tensors(), fmt="auto")
  assert rc == 0
  mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2, context=1))
  abstract = _abstract()
  with jax.set_mesh(mesh):
    state = orbax_io.load_state(str(out), abstract, sharding.state_shardings(abstract, mesh))
  kernel = state["blocks"]["ffn"]["fc1"]["kernel"].get_value()
  assert kernel.sharding.spec == jax.P(None, "fsdp", "tensor")


def test_bf16_and_sharded_index_files(tmp_path):
  torch = pytest.importorskip("torch")
  import safetensors.torch
  tensors = _diffusers_file_tensors()
  names = sorted(tensors)
  halves = [names[:len(names) // 2], names[len(names) // 2:]]
  for i, part in enumerate(halves):
    safetensors.torch.save_file({k: torch.from_numpy(tensors[k]).to(torch.bfloat16) for k in part},
                                str(tmp_path / f"m-{i}.safetensors"))
  index = {"weight_map": {k: f"m-{i}.safetensors" for i, part in enumerate(halves) for k in part}}
  (tmp_path / "m.safetensors.index.json").write_text(json.dumps(index))
  flat = convert_common.load_safetensors(str(tmp_path))
  assert sorted(flat) == names and flat[names[0]].dtype.name == "bfloat16"
  state = convert_common.convert_state(flat, dit_weights.diffusers_rename, _abstract(), source="t")
  got = np.asarray(state["proj_out"]["bias"].get_value())
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, tensors["proj_out.bias"], rtol=1e-2)


def test_unreadable_inputs(tmp_path):
  with pytest.raises(convert_common.ConversionError, match="does not exist"):
    convert_common.load_safetensors(str(tmp_path / "nope.safetensors"))
  bad = tmp_path / "bad.safetensors"
  bad.write_bytes(b"\xff" * 20)
  with pytest.raises(convert_common.ConversionError, match="cannot read safetensors"):
    convert_common.load_safetensors(str(bad))
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "keep").write_text("x")
  with pytest.raises(orbax_io.CheckpointError, match="--force"):
    orbax_io.check_out_dir(str(tmp_path / "out"))
  with pytest.raises(orbax_io.CheckpointError, match="has no state"):
    orbax_io.load_state(str(tmp_path / "out"), _abstract())

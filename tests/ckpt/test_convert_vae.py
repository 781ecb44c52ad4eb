"""VAE weight conversion: diffusers and original-Wan layouts, key errors, `realcam convert`."""

import os
import re

import jax
import numpy as np
import pytest
from flax import nnx

from realcam_jax.ckpt import orbax_io, vae_weights
from realcam_jax.ckpt.convert_common import ConversionError
from realcam_jax.cli import main as cli_main
from realcam_jax.config import get_config
from realcam_jax.models.vae import WanVAE

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers  # noqa: E402


def wan21_like_config():
  """Tiny channels, but Wan2.1's structure (2 res blocks: diffusers' converter assumes it)."""
  config = get_config("vae:tiny", ["--config.model.num_res_blocks=2"])
  return config


def reference_state_dict(model_cfg, seed=0):
  torch.manual_seed(seed)
  ref = diffusers.AutoencoderKLWan(
      base_dim=model_cfg.base_dim, z_dim=model_cfg.z_dim, dim_mult=list(model_cfg.dim_mult),
      num_res_blocks=model_cfg.num_res_blocks,
      temperal_downsample=list(model_cfg.temporal_downsample))
  return {k: v.numpy() for k, v in ref.state_dict().items()}


# Independent diffusers -> original Wan table, written out by hand for Wan2.1's structure
# (4 stages; decoder stages of 3 residual blocks + 1 resample = 4 entries of `upsamples`).
_TO_WAN = [
    (r"\.norm1\.", ".residual.0."), (r"\.conv1\.", ".residual.2."),
    (r"\.norm2\.", ".residual.3."), (r"\.conv2\.", ".residual.6."),
    (r"\.conv_shortcut\.", ".shortcut."),
    (r"^(encoder|decoder)\.conv_in\.", r"\1.conv1."),
    (r"^(encoder|decoder)\.norm_out\.", r"\1.head.0."),
    (r"^(encoder|decoder)\.conv_out\.", r"\1.head.2."),
    (r"\.mid_block\.resnets\.0\.", ".middle.0."), (r"\.mid_block\.attentions\.0\.", ".middle.1."),
    (r"\.mid_block\.resnets\.1\.", ".middle.2."),
    (r"^encoder\.down_blocks\.", "encoder.downsamples."),
    (r"^quant_conv\.", "conv1."), (r"^post_quant_conv\.", "conv2."),
]


def to_wan(key: str) -> str:
  for pat, rep in _TO_WAN:
    key = re.sub(pat, rep, key)
  key = re.sub(r"^decoder\.up_blocks\.(\d)\.resnets\.(\d)\.",
               lambda m: f"decoder.upsamples.{4 * int(m[1]) + int(m[2])}.", key)
  return re.sub(r"^decoder\.up_blocks\.(\d)\.upsamplers\.0\.",
                lambda m: f"decoder.upsamples.{4 * int(m[1]) + 3}.", key)


def leaves(state):
  return {"/".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


def test_wan_layout_agrees_with_diffusers_converter():
  config = wan21_like_config()
  sd = reference_state_dict(config.model)
  wan_sd = {to_wan(k): v for k, v in sd.items()}
  assert len(wan_sd) == len(sd)
  # The hand-written table is the inverse of diffusers' own converter ...
  assert convert_wan_vae_to_diffusers(dict(wan_sd)).keys() == sd.keys()
  # ... and our wan layout gives exactly the state the diffusers layout gives.
  s_diff, _ = vae_weights.convert(sd, "diffusers", config, "ref")
  s_wan, fmt = vae_weights.convert(wan_sd, "auto", config, "ref")
  assert fmt == "wan"
  a, b = leaves(s_diff), leaves(s_wan)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  # Inverse names (used in error messages) agree with the independent table.
  _, wan_name = vae_weights.rename_for("wan", config.model)
  for path in a:
    d = vae_weights.diffusers_source_name(path)
    assert d in sd, (path, d)
    assert wan_name(path) == to_wan(d), path


def test_wan_layout_other_depths_roundtrip():
  config = get_config("vae:tiny")           # 1 res block per stage
  sd = reference_state_dict(config.model)
  layout = vae_weights.WanLayout(config.model.num_res_blocks)
  wan_keys = {layout.from_diffusers(k) for k in sd}
  assert {layout.to_diffusers(k) for k in wan_keys} == set(sd)
  ups = sorted({int(k.split(".")[2]) for k in wan_keys if k.startswith("decoder.upsamples.")})
  assert ups == list(range(3 * 3 + 2))      # 3 stages of (2 resnets + resample), then 2 resnets


def test_conversion_error_lists_every_bad_key():
  config = get_config("vae:tiny")
  sd = reference_state_dict(config.model)
  del sd["decoder.conv_out.bias"]
  sd["encoder.extra_layer.weight"] = np.zeros((2, 2), np.float32)
  sd["encoder.mid_block.attentions.0.proj.weight"] = np.zeros((3, 3, 1, 1), np.float32)
  with pytest.raises(ConversionError) as e:
    vae_weights.convert(sd, "diffusers", config, "broken.safetensors")
  msg = str(e.value)
  assert "1 missing, 1 unexpected, 1 mis-shaped" in msg
  assert "decoder.conv_out.bias" in msg and "encoder.extra_layer.weight" in msg
  assert "encoder.mid_block.attentions.0.proj.weight" in msg
  with pytest.raises(ConversionError, match="neither diffusers"):
    vae_weights.convert({"foo.weight": np.zeros(1)}, "auto", config, "x")


def _abstract(config):
  return nnx.state(nnx.eval_shape(lambda: WanVAE.from_config(config.model, rngs=nnx.Rngs(0))))


def test_cli_convert_safetensors_and_pth(tmp_path):
  from safetensors.numpy import save_file
  config = wan21_like_config()
  sd = reference_state_dict(config.model)
  expected = leaves(vae_weights.convert(sd, "diffusers", config, "ref")[0])
  st = str(tmp_path / "vae.safetensors")
  save_file(sd, st)
  pth = str(tmp_path / "Wan2.1_VAE.pth")
  torch.save({to_wan(k): torch.from_numpy(v) for k, v in sd.items()}, pth)
  common = ["--model", "vae", "--config", "vae:tiny", "--config.model.num_res_blocks=2"]
  for weights, fmt, out in ((st, "diffusers", "a"), (pth, "auto", "b")):
    rc = cli_main(["convert", "--format", fmt, "--weights", weights, "--out",
                   str(tmp_path / out)] + common)
    assert rc == 0
    got = leaves(orbax_io.load_state(str(tmp_path / out), _abstract(config)))
    assert got.keys() == expected.keys()
    for k in got:
      np.testing.assert_array_equal(got[k], expected[k], err_msg=k)
    assert orbax_io.load_config(str(tmp_path / out)).model.num_res_blocks == 2


def test_cli_bad_weights_write_nothing(tmp_path, capsys):
  from safetensors.numpy import save_file
  sd = reference_state_dict(get_config("vae:tiny").model)
  sd.pop("quant_conv.weight")
  sd["decoder.conv_in.weight"] = sd["decoder.conv_in.weight"][:1]
  st = str(tmp_path / "bad.safetensors")
  save_file(sd, st)
  out = tmp_path / "out"
  rc = cli_main(["convert", "--model", "vae", "--format", "diffusers", "--weights", st,
                 "--config", "vae:tiny", "--out", str(out)])
  err = capsys.readouterr().err
  assert rc == 2
  assert "quant_conv.weight" in err and "decoder.conv_in.weight" in err
  assert not out.exists() and os.listdir(tmp_path) == ["bad.safetensors"]

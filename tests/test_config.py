"""Config loading (`FILE[:ARG]`) and `--config.a.b=value` overrides."""

import os

import pytest

from realcam_jax import config as config_lib
from realcam_jax.config import ConfigError, get_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_load_by_module_name_and_by_path():
  by_name = get_config("dit:demo")
  by_path = get_config(os.path.join(ROOT, "configs", "dit.py") + ":demo")
  assert by_name.model.dim == by_path.model.dim == 256
  assert get_config("dit").model.size == "tiny"                  # default argument
  wan = get_config("dit:wan2_1_1_3b").model
  assert (wan.num_layers, wan.dim, wan.num_heads, wan.ffn_dim, wan.text_dim) == (
      30, 1536, 12, 8960, 4096)
  assert tuple(wan.patch_size) == (1, 2, 2) and wan.in_channels == 16
  assert wan.block_cond_dim == 0


def test_overrides_parse_and_keep_types():
  c = get_config("dit:tiny", [
      "--config.model.num_layers=3",          # int
      "--config.model.eps=1",                 # int literal into a float field -> float
      "--config.model.patch_size=[1, 4, 4]",  # list into a tuple field -> tuple
      "--config.model.scan_layers=False",     # bool
      "--config.model.dtype=bfloat16",        # bare string
      "--config.model.remat_policy='full'",   # quoted string
      "model.block_cond_dim=12",              # without the --config. prefix
  ])
  m = c.model
  assert m.num_layers == 3 and isinstance(m.eps, float) and m.eps == 1.0
  assert m.patch_size == (1, 4, 4) and m.scan_layers is False
  assert m.dtype == "bfloat16" and m.remat_policy == "full" and m.block_cond_dim == 12


@pytest.mark.parametrize("override,match", [
    ("--config.model.num_layerz=3", r"has no field 'num_layerz'; fields are \["),
    ("--config.modle.num_layers=3", r"config has no field 'modle'"),
    ("--config.model.num_layers=abc", r"field 'model.num_layers' is a int .* got str 'abc'"),
    ("--config.model.scan_layers=1", r"is a bool .* got int 1"),
    ("--config.model.num_layers", r"must look like --config.a.b=value"),
])
def test_bad_overrides_name_the_problem(override, match):
  with pytest.raises(ConfigError, match=match):
    get_config("dit:tiny", [override])


def test_bad_config_names(tmp_path):
  with pytest.raises(ConfigError, match="unknown config 'nope'"):
    get_config("nope:tiny")
  with pytest.raises(ConfigError, match="does not exist"):
    get_config(str(tmp_path / "missing.py"))
  empty = tmp_path / "empty.py"
  empty.write_text("x = 1\n")
  with pytest.raises(ConfigError, match="has no get_config"):
    get_config(str(empty))
  with pytest.raises(ValueError, match="unknown model size 'huge'"):
    get_config("dit:huge")


def test_split_overrides_and_json_round_trip():
  rest, overrides = config_lib.split_overrides(
      ["--config", "dit:tiny", "--config.model.dim=64", "--iters", "3"])
  assert rest == ["--config", "dit:tiny", "--iters", "3"]
  assert overrides == ["--config.model.dim=64"]
  c = get_config("dit:tiny", overrides)
  back = config_lib.from_json(config_lib.to_json(c))
  assert back.model.dim == 64 and list(back.model.patch_size) == [1, 2, 2]
  assert "dit" in config_lib.bundled_configs()


def test_student_loopaug_share_drives_the_data_pipeline():
  assert get_config("student:demo").data.loopaug_fraction == 0.25
  assert get_config("student:demo,no_loopaug").data.loopaug_fraction == 0.0
  c = get_config("student:tiny", ["--config.student.loopaug_fraction=0.6"])
  assert c.data.loopaug_fraction == 0.6
  # The teacher trains on plain clips.
  assert get_config("teacher:demo").data.get("loopaug_fraction", 0.0) == 0.0


def test_source_skip_defaults_on_for_demo_only():
  assert get_config("teacher:demo").model.source_skip
  assert get_config("student:demo").model.source_skip      # the student shares the architecture
  assert not get_config("teacher:demo,no_source_skip").model.source_skip
  assert not get_config("teacher:wan2_1_1_3b").model.source_skip   # Wan-compatible
  assert not get_config("teacher:tiny").model.source_skip


def test_demo_student_streams_with_a_rolling_window():
  s = get_config("student:demo").student
  assert (s.sink_chunks, s.window_chunks, s.chunk_pairs) == (1, 2, 3)
  s = get_config("student:demo,no_window").student
  assert (s.sink_chunks, s.window_chunks) == (0, 0)
  # At the 3-chunk training length the window hides nothing: every chunk sees all before it.
  from realcam_jax.inference import kv_cache
  for q in range(3):
    assert kv_cache.visible_chunks(q, 3, 1, 2)[:q + 1].all()

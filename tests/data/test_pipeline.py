"""The grain pipeline: batches, relative poses, checkpointable state, sharding, LoopAug mix."""

import numpy as np
import pytest

from realcam_jax.data import pipeline, tfds_builder


def _batches(it, n):
  return [next(it) for _ in range(n)]


def _assert_same(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_batches_have_model_ready_shapes_and_relative_poses(tiny_dataset):
  data_dir, config = tiny_dataset
  d = config.data
  it = pipeline.make_dataset(data_dir, "validation", config, seed=0, batch_size=2,
                             shard_index=0, shard_count=1)
  b = next(it)
  L, H, W = d.train_frames, d.height, d.width
  assert b["source"].shape == (2, L, H, W, 3) and b["source"].dtype == np.float32
  assert b["target"].shape == (2, L, H, W, 3)
  assert -1.0 <= b["source"].min() and b["source"].max() <= 1.0 and b["source"].std() > 0.05
  assert b["source_poses"].shape == (2, L, 4, 4) and b["target_poses"].shape == (2, L, 4, 4)
  assert b["intrinsics"].shape == (2, 3, 3)
  assert b["text_embedding"].shape == (2, d.text_len, d.text_dim) and not b["has_text"].any()
  np.testing.assert_allclose(b["source_poses"][:, 0], np.broadcast_to(np.eye(4), (2, 4, 4)),
                             atol=1e-5)
  # Against the stored world poses (validation: window starts at frame 0).
  source = tfds_builder.load_builder(
      data_dir, tfds_builder.config_from_data(d)).as_data_source("validation")
  records = {int(source[i]["seed"]): source[i] for i in range(len(source))}
  for i in range(2):
    rec = records[int(b["seed"][i])]
    cam = int(b["target_camera"][i])
    ref = rec["source_c2w"][0]
    np.testing.assert_allclose(ref @ b["target_poses"][i], rec["target_c2w"][cam], atol=1e-4)
    np.testing.assert_allclose(b["target"][i], rec["target_rgb"][cam] / 127.5 - 1.0, atol=1e-6)


def test_iterator_state_restores_mid_epoch(tiny_dataset):
  data_dir, config = tiny_dataset
  kw = dict(seed=3, batch_size=2, shard_index=0, shard_count=1, loopaug_fraction=0.5)
  it = pipeline.make_dataset(data_dir, "train", config, **kw)
  _batches(it, 2)                                  # mid-epoch (3 batches per epoch)
  state = it.get_state()
  expected = _batches(it, 3)                       # runs into the next epoch
  again = pipeline.make_dataset(data_dir, "train", config, **kw)
  again.set_state(state)
  for a, b in zip(expected, _batches(again, 3)):
    _assert_same(a, b)
  fresh = pipeline.make_dataset(data_dir, "train", config, **kw)
  assert not np.array_equal(next(fresh)["source"], expected[0]["source"])  # not a restart


def test_same_seed_same_batches_other_seed_other_order(tiny_dataset):
  data_dir, config = tiny_dataset
  kw = dict(batch_size=3, shard_index=0, shard_count=1, loopaug_fraction=0.5)
  a = _batches(pipeline.make_dataset(data_dir, "train", config, seed=1, **kw), 2)
  b = _batches(pipeline.make_dataset(data_dir, "train", config, seed=1, **kw), 2)
  c = _batches(pipeline.make_dataset(data_dir, "train", config, seed=2, **kw), 2)
  for x, y in zip(a, b):
    _assert_same(x, y)
  assert any(not np.array_equal(x["seed"], y["seed"]) or not np.array_equal(x["source"],
                                                                             y["source"])
             for x, y in zip(a, c))


def test_shards_are_disjoint_and_cover_the_split(tiny_dataset):
  data_dir, config = tiny_dataset
  seen = []
  for shard in range(2):
    it = pipeline.make_dataset(data_dir, "train", config, seed=0, batch_size=1,
                               shard_index=shard, shard_count=2, num_epochs=1,
                               drop_remainder=False)
    seen.append({int(b["seed"][0]) for b in it})
  assert len(seen[0]) == len(seen[1]) == 3 and not seen[0] & seen[1]
  assert len(seen[0] | seen[1]) == config.data.split_sizes.train
  with pytest.raises(ValueError, match="shard_index=2 with shard_count=2"):
    pipeline.make_dataset(data_dir, "train", config, seed=0, shard_index=2, shard_count=2)


def test_loopaug_fraction_mixes_loop_examples(tiny_dataset):
  data_dir, config = tiny_dataset
  kw = dict(seed=0, batch_size=6, shard_index=0, shard_count=1)
  loops = next(pipeline.make_dataset(data_dir, "train", config, loopaug_fraction=1.0, **kw))
  assert loops["loopaug"].all()
  np.testing.assert_allclose(loops["source_poses"][:, -1], loops["source_poses"][:, 0], atol=1e-5)
  np.testing.assert_allclose(loops["target_poses"][:, -1], loops["target_poses"][:, 0], atol=1e-5)
  np.testing.assert_array_equal(loops["source"][:, -1], loops["source"][:, 0])
  plain = next(pipeline.make_dataset(data_dir, "train", config, loopaug_fraction=0.0, **kw))
  assert not plain["loopaug"].any()
  flags = np.concatenate([b["loopaug"] for b in _batches(
      pipeline.make_dataset(data_dir, "train", config, loopaug_fraction=0.5, **kw), 6)])
  assert 0.2 < flags.mean() < 0.8
  with pytest.raises(ValueError, match="loopaug_fraction=1.5"):
    pipeline.make_dataset(data_dir, "train", config, loopaug_fraction=1.5, **kw)


def test_generic_streams_latents_and_text(tiny_config):
  """Latent-like float streams with pixel-rate poses, and stored text embeddings."""
  config = tiny_config.data.copy_and_resolve_references()
  config.source_key, config.target_key, config.train_frames = "source_latent", "target_latent", 3
  rng = np.random.default_rng(0)
  poses = np.tile(np.eye(4, dtype=np.float32), (9, 1, 1))
  poses[:, 0, 3] = np.arange(9)
  records = [dict(source_latent=rng.normal(size=(3, 2, 2, 4)).astype(np.float32),
                  target_latent=rng.normal(size=(1, 3, 2, 2, 4)).astype(np.float32),
                  source_c2w=poses, target_c2w=poses[None], intrinsics=np.eye(3, dtype=np.float32),
                  seed=i, text_embedding=np.ones((config.text_len, config.text_dim), np.float32))
             for i in range(4)]
  b = next(pipeline.make_dataset("", "validation", config, seed=0, batch_size=2, shard_index=0,
                                 shard_count=1, source=records))
  np.testing.assert_array_equal(b["source"][0], records[0]["source_latent"])
  np.testing.assert_allclose(b["source_poses"][0, :, 0, 3], [0.0, 4.0, 8.0])  # every 4th pose
  assert b["has_text"].all() and b["text_embedding"].shape == (2, config.text_len, config.text_dim)


def test_missing_dataset_and_bad_split(tmp_path, tiny_dataset):
  data_dir, config = tiny_dataset
  with pytest.raises(tfds_builder.DatasetMissingError, match="realcam data build"):
    pipeline.make_dataset(str(tmp_path), "train", config, seed=0, shard_index=0, shard_count=1)
  with pytest.raises(ValueError, match="no split 'dev'"):
    pipeline.make_dataset(data_dir, "dev", config, seed=0, shard_index=0, shard_count=1)


def test_worker_processes_give_the_same_batches(tiny_dataset):
  data_dir, config = tiny_dataset
  kw = dict(seed=4, batch_size=2, shard_index=0, shard_count=1, loopaug_fraction=0.5)
  local = _batches(pipeline.make_dataset(data_dir, "train", config, num_workers=0, **kw), 2)
  workers = pipeline.make_dataset(data_dir, "train", config, num_workers=1, **kw)
  remote = _batches(workers, 2)
  for a, b in zip(local, remote):
    _assert_same(a, b)
  state = workers.get_state()
  nxt = next(workers)
  again = pipeline.make_dataset(data_dir, "train", config, num_workers=1, **kw)
  again.set_state(state)
  _assert_same(nxt, next(again))

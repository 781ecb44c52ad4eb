"""`realcam data import multicamvideo`: records, poses, captions, pairs, bad inputs, resume."""

import json
import os
import shutil

import numpy as np
import pytest

import fake_multicam
from realcam_jax.cli import main
from realcam_jax.data import multicam as mc
from realcam_jax.data import multicam_import as mi
from realcam_jax.data import pipeline

FRAMES = 9


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("mcv"))
  poses = fake_multicam.make_tree(root, scenes=3, cameras=3, frames=FRAMES)
  return root, poses


def copy_tree(tree, tmp_path):
  dst = str(tmp_path / "src")
  shutil.copytree(tree[0], dst)
  return dst


def settings(**kw):
  return mc.ImportSettings(**dict(dict(height=32, width=32, frames=FRAMES, scenes_per_shard=2),
                                  **kw))


def test_import_round_trip(tree, tmp_path, capsys):
  root, poses = tree
  out = str(tmp_path / "out")
  code = main(["data", "import", "multicamvideo", "--src", root, "--out", out, "--size", "32x32",
               "--frames", str(FRAMES), "--scenes-per-shard", "2"])
  assert code == 0
  assert "3 of 3 scenes imported (18 records), 0 skipped" in capsys.readouterr().out
  records = mi.open_imported(out)["train"]
  assert len(records) == 18
  seen = set()
  for i in range(len(records)):
    rec = records[i]
    scene, s, t = mc.decode_text(rec["scene"]), int(rec["source_camera"]), int(rec["target_camera"][0])
    seen.add((scene, s, t))
    np.testing.assert_allclose(rec["source_c2w"], poses[scene][s], atol=1e-5)
    np.testing.assert_allclose(rec["target_c2w"][0], poses[scene][t], atol=1e-5)
    assert mc.decode_text(rec["caption"]) == f"scene {scene[-1]} seen by camera {t}"
    assert rec["caption_sha1"].tobytes().hex() == mc.caption_key(mc.decode_text(rec["caption"]))
    assert rec["source_rgb"].shape == (FRAMES, 32, 32, 3) and rec["target_rgb"].shape[0] == 1
  assert len(seen) == 18            # every ordered pair of 3 cameras in 3 scenes, once
  # 24 mm over a 23.76 mm sensor spanning the 64 px width; the 48x48 centre crop -> 32 px.
  k = records[0]["intrinsics"]
  np.testing.assert_allclose([k[0, 0], k[1, 1], k[0, 2], k[1, 2]],
                             [24 / 23.76 * 64 * 32 / 48] * 2 + [16, 16], rtol=1e-6)
  with open(os.path.join(out, mc.CAPTIONS_FILE)) as f:
    assert len(json.load(f)) == 9   # one per target video
  # The grain pipeline reads the records unchanged.
  it = pipeline.make_dataset(None, "train", _pipeline_config(), seed=0, batch_size=2,
                             source=records, shard_index=0, shard_count=1)
  batch = next(it)
  assert batch["source"].shape == (2, FRAMES, 32, 32, 3)
  np.testing.assert_allclose(batch["source_poses"][:, 0], np.broadcast_to(np.eye(4), (2, 4, 4)),
                             atol=1e-5)


def _pipeline_config():
  from configs.data import data_config
  d = data_config("tiny")
  d.train_frames = FRAMES
  return d


def test_random_pairs_are_seeded(tree):
  cams = [1, 2, 3, 4]
  a = mc.choose_pairs(cams, settings(pairs="random", pairs_per_scene=3, seed=1), "f18/scene1")
  assert a == mc.choose_pairs(cams, settings(pairs="random", pairs_per_scene=3, seed=1),
                              "f18/scene1")
  assert len(set(a)) == 3 and all(s != t for s, t in a)
  others = [mc.choose_pairs(cams, settings(pairs="random", pairs_per_scene=3, seed=s),
                            "f18/scene1") for s in range(2, 8)]
  assert any(o != a for o in others)


def test_bad_scenes_are_skipped_with_one_line(tree, tmp_path):
  src = copy_tree(tree, tmp_path)
  train = os.path.join(src, "train", fake_multicam.FOCAL)
  shutil.copytree(os.path.join(train, "scene1"), os.path.join(train, "scene4"))
  shutil.copytree(os.path.join(train, "scene1"), os.path.join(train, "scene5"))
  os.unlink(os.path.join(train, "scene1", "cameras", "camera_extrinsics.json"))   # no cameras
  with open(os.path.join(train, "scene2", "videos", "cam02.mp4"), "wb") as f:     # unreadable
    f.write(b"not a video")
  cam_json = os.path.join(train, "scene3", "cameras", "camera_extrinsics.json")
  with open(cam_json) as f:
    data = json.load(f)
  for frame in data.values():                                                     # cam03 gone
    del frame["cam03"]
  with open(cam_json, "w") as f:
    json.dump(data, f)
  with open(os.path.join(src, "train", "metadata.csv")) as f:                     # no caption
    rows = list(f)
  rows += [f"{fake_multicam.FOCAL}/scene{s}/videos/cam0{c}.mp4,scene {s} camera {c}\n"
           for s in (4, 5) for c in (1, 2, 3) if (s, c) != (4, 2)]
  with open(os.path.join(src, "train", "metadata.csv"), "w") as f:
    f.writelines(rows)
  fake_multicam.write_video(os.path.join(train, "scene5", "videos", "cam01.mp4"),   # short
                            np.zeros((4, 48, 64, 3), np.uint8), fps=15.0)
  lines = []
  summary = mi.run_import(src, str(tmp_path / "out"), settings(), log=lines.append)
  assert summary.imported == 0 and not summary.finished
  assert not os.path.exists(str(tmp_path / "out" / "dataset_info.json"))
  expect = {"scene1": ("missing camera file", "scene1/cameras/camera_extrinsics.json"),
            "scene2": ("unreadable video", "scene2/videos/cam02.mp4"),
            "scene3": ("camera missing from JSON", "cam03"),
            "scene4": ("caption missing", "scene4/videos/cam02.mp4"),
            "scene5": ("short video", "scene5/videos/cam01.mp4")}
  assert len(lines) == 5 and all("\n" not in line for line in lines)
  for line, (scene, (_, needle)) in zip(lines, sorted(expect.items())):
    assert scene in line and needle in line, line
  assert summary.skipped == {kind: 1 for kind, _ in expect.values()}


def test_bad_scenes_leave_the_rest(tree, tmp_path):
  src = copy_tree(tree, tmp_path)
  os.unlink(os.path.join(src, "train", fake_multicam.FOCAL, "scene2", "cameras",
                         "camera_extrinsics.json"))
  summary = mi.run_import(src, str(tmp_path / "out"), settings(), log=lambda _: None)
  assert summary.finished and summary.imported == 2 and summary.records == 12
  assert summary.skipped == {"missing camera file": 1}
  assert "2 of 3 scenes imported (12 records), 1 skipped (1 missing camera file)" in summary.line()
  assert len(mi.open_imported(str(tmp_path / "out"))["train"]) == 12


def test_resume_and_process_shards(tree, tmp_path):
  root, _ = tree
  out = str(tmp_path / "out")
  # Process 1 of 2 imports chunk 1 (scene3) only; nothing reads as a dataset yet.
  s1 = mi.run_import(root, out, settings(), process_index=1, process_count=2)
  assert not s1.finished and s1.pending_chunks == 1 and s1.imported == 1
  with pytest.raises(mc.ImportError_, match="unfinished import"):
    mi.open_imported(out)
  # A killed writer's half-written file is discarded on the rerun.
  work = os.path.join(out, ".import-train")
  open(os.path.join(work, "chunk-000000.array_record.part"), "wb").close()
  with pytest.raises(mc.ImportError_, match="other settings"):
    mi.run_import(root, out, settings(frames=5), process_index=0, process_count=2)
  before = os.path.getmtime(os.path.join(work, "chunk-000001.array_record"))
  s0 = mi.run_import(root, out, settings(), process_index=0, process_count=2)
  assert s0.finished and s0.imported == 3 and s0.records == 18
  assert not os.path.exists(work)
  shard = os.path.join(out, "multicamvideo-train.array_record-00001-of-00002")
  assert os.path.getmtime(shard) == before          # chunk 1 was not redone
  assert len(mi.open_imported(out)["train"]) == 18

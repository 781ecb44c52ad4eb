"""Fixtures for the camera tests."""

import os

import pytest

RECAM_FILE = os.path.join(os.path.dirname(__file__), "data", "recammaster_camera_extrinsics.json")


@pytest.fixture(scope="session")
def recam_path():
  """Path of ReCamMaster's `camera_extrinsics.json` (cam01..cam10, 81 frames)."""
  return RECAM_FILE


@pytest.fixture(scope="session")
def recam_tracks(recam_path):
  """`{camXX: CameraTrack}` read once per session."""
  from realcam_jax import camera as cam
  return cam.read_cameras(recam_path)

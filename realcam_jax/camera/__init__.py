"""Cameras: one pose convention, relative poses, intrinsics, Plücker rays, trajectories, files.

Convention used everywhere in realcam_jax:

- A pose is a **camera-to-world** 4x4 matrix `[[R, t], [0, 0, 0, 1]]`: the
  columns of R are the camera's axes in world coordinates, t is the camera
  centre. A camera point `p_c` maps to the world as `p_w = R p_c + t`.
- Camera axes are **OpenCV**: x right, y down, z forward (the viewing
  direction). Image pixel (row i, col j) has its centre at `(j + 0.5, i + 0.5)`.
- Units are **metres**. World axes follow the same convention when a file does
  not fix them (presets: the world is the first camera, so "up" is world -y).
- The model sees target poses **relative to the source camera's first frame**
  (`relative_poses(..., reference="source_first")`), flattened to the 12-d
  row-major `[R|t]` (`pose_to_12`), one per latent frame.

Files from other tools are converted on import (`read_cameras`): ReCamMaster /
MultiCamVideo Unreal matrices via `unreal_to_opencv`, RealEstate10K
world-to-camera rows by inversion. Bad input raises `CameraFileError` naming
the file, frame and camera.

Run-time functions (relative poses, `pose_to_12`, rotations, Plücker rays,
interpolation) are array-API neutral: numpy in -> numpy out, jax in -> jax out.
"""

from realcam_jax.camera.interp import (blend_poses, interpolate_poses, resample_path,
                                       slerp_quaternion, slerp_rotation, smooth_transition,
                                       smoothstep)
from realcam_jax.camera.io import (CameraTrack, detect_format, opencv_to_unreal, read_camera,
                                  read_cameras, unreal_to_opencv, write_cameras)
from realcam_jax.camera.intrinsics import (crop_intrinsics, denormalize_intrinsics,
                                           fov_from_intrinsics, intrinsics_from_focal,
                                           intrinsics_from_fov, normalize_intrinsics,
                                           resize_intrinsics, scale_intrinsics)
from realcam_jax.camera.plucker import patchify_rays, pixel_centers, plucker_rays
from realcam_jax.camera.pose import (axis_angle_to_matrix, invert_pose, is_rotation, look_at,
                                     make_pose, matrix_to_axis_angle, matrix_to_quaternion,
                                     pose_from_12, pose_to_12, quaternion_to_matrix,
                                     relative_poses, relative_to, rotation_angle, rotation_x,
                                     rotation_y)
from realcam_jax.camera.presets import (describe_trajectory, evaluate_trajectory, get_trajectory,
                                        list_trajectories)
from realcam_jax.camera.validate import CameraFileError, check_poses

__all__ = [
    "CameraFileError", "CameraTrack", "axis_angle_to_matrix", "blend_poses", "check_poses",
    "crop_intrinsics", "denormalize_intrinsics", "describe_trajectory", "detect_format",
    "evaluate_trajectory", "fov_from_intrinsics", "get_trajectory", "interpolate_poses",
    "intrinsics_from_focal", "intrinsics_from_fov", "invert_pose", "is_rotation",
    "list_trajectories", "look_at", "make_pose", "matrix_to_axis_angle", "matrix_to_quaternion",
    "normalize_intrinsics", "opencv_to_unreal", "patchify_rays", "pixel_centers", "plucker_rays",
    "pose_from_12", "pose_to_12", "quaternion_to_matrix", "read_camera", "read_cameras",
    "relative_poses", "relative_to", "resample_path", "resize_intrinsics", "rotation_angle",
    "rotation_x", "rotation_y", "scale_intrinsics", "slerp_quaternion", "slerp_rotation",
    "smooth_transition", "smoothstep", "unreal_to_opencv", "write_cameras",
]

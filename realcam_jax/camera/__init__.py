"""realcam_jax.camera."""

"""realcam_jax.inference."""

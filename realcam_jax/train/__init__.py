"""realcam_jax.train."""

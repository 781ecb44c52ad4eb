"""realcam_jax.eval."""

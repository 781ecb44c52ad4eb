"""realcam_jax.diffusion."""

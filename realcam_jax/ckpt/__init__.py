"""realcam_jax.ckpt."""

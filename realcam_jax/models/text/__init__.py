"""Text encoders (Wan2.1's umT5-XXL) and their tokenizers."""

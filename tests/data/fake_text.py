"""A tiny random umT5 encoder folder (transformers layout) and a SentencePiece tokenizer."""

import os

CORPUS = ["A man in a plaid suit jacket stands next to a white police car.",
          "The camera is stationary, capturing the scene from a medium shot.",
          "scene 1 seen by camera 2, scene 3 seen by camera 1.",
          "A red cube rolls across a textured ground under a blue sky."] * 20


def make_encoder_folder(folder, text_config, seed=0):
  """Saves a tiny random UMT5EncoderModel (matching `text_config`) and its tokenizer into
  `folder`; returns the model. Needs torch, transformers and sentencepiece."""
  import sentencepiece as spm
  import torch
  import transformers
  t = text_config
  cfg = transformers.UMT5Config(
      vocab_size=t.vocab_size, d_model=t.dim, d_kv=t.head_dim, d_ff=t.ffn_dim,
      num_layers=t.num_layers, num_heads=t.num_heads, relative_attention_num_buckets=t.num_buckets,
      relative_attention_max_distance=t.max_distance, feed_forward_proj="gated-gelu",
      layer_norm_epsilon=t.eps, dropout_rate=0.0, pad_token_id=0, eos_token_id=1)
  torch.manual_seed(seed)
  model = transformers.UMT5EncoderModel(cfg).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  os.makedirs(folder, exist_ok=True)
  model.save_pretrained(folder)
  corpus = os.path.join(folder, "corpus.txt")
  with open(corpus, "w") as f:
    f.write("\n".join(CORPUS))
  spm.SentencePieceTrainer.train(
      input=corpus, model_prefix=os.path.join(folder, "spiece"), vocab_size=t.vocab_size,
      model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
      hard_vocab_limit=False)
  os.unlink(corpus)
  return model

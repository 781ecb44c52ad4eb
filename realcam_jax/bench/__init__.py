"""Speed benchmarks: the streaming student vs the offline teacher and prefix baseline.

  stream.py   per-chunk latency, frames/s, compile time and memory of a `StreamingSession`
              vs video length (with and without the rolling KV window)
  offline.py  whole-video latency of the bidirectional teacher / prefix baseline (Euler +
              CFG), with a time guard that extrapolates from one measured step
  report.py   machine description, bench.json, bench.md and latency_vs_length.png

`realcam bench` (realcam_jax/cli/bench.py) runs them; speed needs no trained weights.
"""

"""Speed benchmarks: the streaming student vs the offline teacher and prefix baseline.

  stream.py   per-chunk latency, frames/s, compile time and memory of a `StreamingSession`
              vs video length (with and without the rolling KV window)
  offline.py  whole-video latency of the bidirectional teacher / prefix baseline (Euler +
              CFG), with a time guard that extrapolates from one measured step
  report.py   machine description, bench.json, bench.md and latency_vs_length.png
  record.py   benchmark records (docs/results/NAME.json): command, machine, date, numbers,
              markdown table; peak FLOP/s table for MFU
  convert.py  records from bench.json, eval results.json and the VAE export's meta.json
  benchdoc.py docs/benchmarks.md from the records (launch/make_benchmarks_doc.py)
  cost.py     analytic FLOPs and HBM bytes per generated frame of the streaming student
              (DiT passes + VAE) per option, and the frames/s they predict on an H100
  jaxpr_cost.py  FLOPs / operand bytes of the matmuls and convs of a jaxpr (what cost.py
              is checked against)
  levers.py   each speed lever timed in one run beside the cost model
              (launch/bench_levers.py)

`realcam bench` (realcam_jax/cli/bench.py) runs them; speed needs no trained weights.
"""

"""Benchmark building blocks for `python -m vlsi_edge.bench`: machine limits and peer runtimes."""

"""Benchmarks (`facemend bench`): machine roofline, per-model speed and memory, peers."""

"""Benchmarks (commands, not tests): python3 -m bench.speed, python3 -m bench.quality."""

"""Benchmarks: each module measures one path against a baseline run in the same process."""

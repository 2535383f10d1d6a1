"""Benchmarks of the mesh, each against a reference measured in the same run.

`uv run python -m bench` runs every scenario; see docs/bench.md.
"""

"""Benchmarks of decodekit against torch and numpy reference implementations."""

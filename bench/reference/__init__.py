"""Plain reference implementations that the benchmarks compare decodekit against."""

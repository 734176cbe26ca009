"""Benchmarks: ``mpiexec -n 2 python -m ringred.bench [--help]``."""

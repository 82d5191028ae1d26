"""Parley's benchmarks (``make bench``): every figure is a ratio to a baseline run beside it.

Not tests: nothing here asserts, each benchmark records what it measured (JSON and a PNG under
``bench/results/``) and ``docs/performance.md`` is rewritten from those results.
"""

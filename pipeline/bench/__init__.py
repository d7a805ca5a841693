"""Benchmarks of the pipeline: `python -m pipeline.bench [--smoke]` (see __main__.py).

One module per benchmark; each has `run(cfg, work) -> list[Row]`. Heavy work runs in child
processes (a Keras backend is chosen once per process, and peak memory is per process).
"""

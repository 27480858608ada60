"""Parameter sweeps: many runs of one notebook, cached, sharded, compared in one report.

``space`` builds the configurations (grid, random, list) and shards them; ``cache``
keys finished runs; ``executors`` runs them (a local process pool, Dask, or a
plugin); ``runner.run_sweep`` ties it together and writes ``sweep.json``;
``merge.merge_sweeps`` joins CI shards; ``compare`` turns a sweep into a Report.
Import the submodules you need: this package imports nothing heavy.
"""

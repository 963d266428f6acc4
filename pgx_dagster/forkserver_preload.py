"""Imported first by the forkservers the project starts, as a preload module: `forksafe.protect_children()`.

A forkserver's preload takes module names only, so importing this module is the call. A multiprocess
executor's forkserver (execution.py) and the benchmark's pool's (benchmarks/pool.py) preload it; nothing else
imports it - the code location's import does nothing to the process (forksafe.py).
"""

from pgx_dagster.forksafe import protect_children

protect_children()

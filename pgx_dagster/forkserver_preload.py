"""Imported first by the forkservers the project starts, as a preload module: `forksafe.protect_children()`.

A forkserver's preload takes module names only, so importing this module is the call. The run launcher's
forkserver (ops/launcher.py PRELOAD, also the benchmark's pool) and a multiprocess executor's (execution.py)
preload it; nothing else imports it - the code location's import does nothing to the process (forksafe.py).
"""

from pgx_dagster.forksafe import protect_children

protect_children()

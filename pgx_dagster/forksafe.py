"""Import DuckDB so that the process may fork: close the default connection `import duckdb` opens.

`import duckdb` opens a default in-memory connection with a thread per core. A child forked while
those threads live inherits DuckDB's state without its threads and can crash inside DuckDB
(duckdb/duckdb-python#292). We never use that connection, so closing it (which joins its threads)
makes the import safe for the forkservers that preload this module; `duckdb.sql()` would open a new
one. A process that has opened a database of its own must still not fork: see `launcher.process_pool`.
"""

import duckdb

duckdb.default_connection().close()

"""One module per pipeline stage: its assets and its checks, beside its SQL in sql/<stage>/."""

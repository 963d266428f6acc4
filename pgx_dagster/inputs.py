"""`pgx validate-inputs`: the preflight check of the seed's validate_silver_inputs.py. Prints, per raw
table, every candidate path, whether it has files, which one the pipeline will read and why; exits 2
with a clear message when a table has none."""

from __future__ import annotations

from pgx_dagster.formats import raw_format, source_files
from pgx_dagster.lake import RAW_TABLES, LakeResource


def validate_inputs(lake: LakeResource) -> tuple[bool, list[str]]:
    if lake.raw_format != "pgx":
        return _validate_format(lake)
    lines = [f"Raw inputs under {lake.raw_root}:"]
    ok = True
    for table in RAW_TABLES:
        candidates = lake.raw_candidates(table)
        found = [(path, why, len(lake.files(path))) for path, why in candidates]
        chosen = next(((p, w, n) for p, w, n in found if n), None)
        lines.append(f"  {table}:")
        for path, why, n in found:
            mark = "->" if chosen and path == chosen[0] else "  "
            lines.append(f"    {mark} {path}  [{n} file(s); {why}]")
        if chosen:
            lines.append(f"     uses {chosen[0]} ({chosen[1]})")
        else:
            ok = False
            tried = ", ".join(p for p, _, _ in found)
            lines.append(f"     ERROR: no files for {table}; tried {tried}")
    return ok, lines


def _validate_format(lake: LakeResource) -> tuple[bool, list[str]]:
    """Tuva / DE-SynPUF: the files each source of the format would read."""
    fmt = raw_format(lake.raw_format)
    lines = [f"Raw inputs ({fmt.name} format) under {lake.raw_root}:"]
    ok = True
    for source in fmt.sources:
        files, tried = source_files(lake, source)
        lines.append(f"  {source.view}: {len(files)} file(s)")
        lines += [f"    -> {f}" for f in files]
        if not files:
            lines.append(f"     {'(none: read as empty)' if source.may_be_absent else 'ERROR: no files'}; tried "
                         + ", ".join(tried))  # fmt: skip
            ok &= source.may_be_absent
    return ok, lines

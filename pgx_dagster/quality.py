"""What every asset check shares: contract validation of a written dataset, and verdicts with
the numbers behind them. Each stage module declares its own checks with these helpers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from pgx_dagster.contracts import Contract, validate_frame
from pgx_dagster.duck import Session

BATCH_ROWS = 250_000


def verdict(passed: bool, metadata: Mapping[str, Any], *, warn_only: bool = False) -> AssetCheckResult:
    """An AssetCheckResult whose metadata shows the figures the verdict rests on."""
    return AssetCheckResult(
        passed=bool(passed),
        severity=AssetCheckSeverity.WARN if warn_only else AssetCheckSeverity.ERROR,
        metadata={k: _metadata_value(v) for k, v in metadata.items()},
    )


def _metadata_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return MetadataValue.json(value)
    return value


def contract_violations(session: Session, relation: str, contract: Contract) -> dict[str, Any]:
    """Types, values (pandera, on collected batches) and key uniqueness of `relation`."""
    actual = session.columns(relation)
    expected = [(name, col.type) for name, col in contract.columns.items()]
    type_problems = []
    actual_map = dict(actual)
    for name, typ in expected:
        if name not in actual_map:
            type_problems.append(f"missing column {name} ({typ})")
        elif actual_map[name] != typ:
            type_problems.append(f"{name}: {actual_map[name]}, expected {typ}")
    type_problems += [f"unexpected column {n}" for n, _ in actual if n not in dict(expected)]

    failures: dict[str, int] = {}
    rows = 0
    if not type_problems:
        reader = session.execute(f"SELECT * FROM {relation}").to_arrow_reader(BATCH_ROWS)
        for batch in reader:
            rows += batch.num_rows
            for label, n in validate_frame(contract, batch.to_pandas()).items():
                failures[label] = failures.get(label, 0) + n
    else:
        rows = session.scalar(f"SELECT count(*) FROM {relation}")
    # NaN and infinity pass pandera's dtype and range rules unnoticed (and pandas shows NULL as NaN):
    # counted in SQL, for every floating-point column of every contract.
    floating = [n for n, t in actual if t in ("DOUBLE", "FLOAT", "REAL")]
    if floating:
        tallies = ", ".join(f'count(*) FILTER (WHERE NOT isfinite("{n}"))' for n in floating)
        counts = session.execute(f"SELECT {tallies} FROM {relation}").fetchone()
        for name, n in zip(floating, counts, strict=True):
            if n:
                failures[f"{name}: finite"] = failures.get(f"{name}: finite", 0) + int(n)
    duplicates = 0
    if contract.key and all(k in actual_map for k in contract.key):
        keys = ", ".join(contract.key)
        duplicates = session.scalar(
            f"SELECT count(*) FROM (SELECT {keys} FROM {relation} GROUP BY ALL HAVING count(*) > 1)"
        )
    return {"rows": rows, "type_problems": type_problems, "value_failures": failures, "duplicate_keys": duplicates}


def contract_result(session: Session, relation: str, contract: Contract) -> AssetCheckResult:
    v = contract_violations(session, relation, contract)
    passed = not v["type_problems"] and not v["value_failures"] and v["duplicate_keys"] == 0
    return verdict(
        passed,
        {
            "contract": contract.name,
            "rows_checked": v["rows"],
            "type_problems": v["type_problems"],
            "value_failures": v["value_failures"],
            "duplicate_keys": v["duplicate_keys"],
            "key": ", ".join(contract.key),
        },
    )

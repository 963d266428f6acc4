"""What every asset check shares: contract validation of a written dataset, verdicts with the numbers
behind them, and the materialization a verdict judged. Each stage module declares its own checks with these helpers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity, AssetKey, AssetRecordsFilter, DagsterInstance, MetadataValue

from pgx_dagster.contracts import Contract, failure_counts
from pgx_dagster.duck import Session
from pgx_dagster.settings import get_settings


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
    """Types, values (pandera, on distinct values: value_failures) and key uniqueness of `relation`."""
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

    rows = session.scalar(f"SELECT count(*) FROM {relation}")
    failures = value_failures(session, relation, contract) if not type_problems and rows else {}
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


def value_failures(session: Session, relation: str, contract: Contract) -> dict[str, int]:
    """pandera's failures per 'column: check' over every row of `relation`, validated on distinct values:
    each column's, weighted by their rows (a column with no rule but NOT NULL: NULL or not), and for each
    rule over several columns the distinct combinations of its columns (contracts module docstring)."""
    import numpy as np  # on first use, as pandera (contracts._OnFirstUse): not at every process start
    import pandas as pd

    def distinct(query: str) -> tuple[Any, np.ndarray]:
        """The rows of `query` (its last column `rows_`: how many rows each stands for) and their weights."""
        table = session.execute(query).to_arrow_table()
        return table.drop_columns(["rows_"]), table.column("rows_").to_numpy()

    values: dict[str, pd.Series] = {}
    weights: dict[str, np.ndarray] = {}
    for name, col in contract.columns.items():
        c = f'"{name}"'
        if col.checks:
            query = f"SELECT {c}, count(*) AS rows_ FROM {relation} GROUP BY ALL"
        elif not col.nullable:
            query = f"SELECT any_value({c}) AS {c}, count(*) AS rows_ FROM {relation} GROUP BY {c} IS NULL"
        else:
            continue  # any value passes
        table, weights[name] = distinct(query)
        values[name] = table.column(name).to_pandas()
    failures: dict[str, int] = {}
    if values:
        # One frame of every column: a column with fewer distinct values repeats its first, with weight 0.
        length = max(len(v) for v in values.values())
        for name, v in values.items():
            pad = length - len(v)
            values[name] = v.take(np.r_[np.arange(len(v)), np.zeros(pad, dtype=int)]).reset_index(drop=True)
            weights[name] = np.r_[weights[name], np.zeros(pad, dtype=weights[name].dtype)]
        failures = failure_counts(contract.column_schema(list(values)), pd.DataFrame(values), weights)
    for rule in contract.extra_checks:
        columns = ", ".join(f'"{c}"' for c in rule.columns)
        table, combos = distinct(f"SELECT {columns}, count(*) AS rows_ FROM {relation} GROUP BY ALL")
        for label, n in failure_counts(contract.frame_schema(rule), table.to_pandas(), {None: combos}).items():
            failures[label] = failures.get(label, 0) + n
    return failures


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


def judged_materialization(instance: DagsterInstance, asset_key: AssetKey, partition: str | None) -> Any | None:
    """The latest materialization of the asset (partition) a check evaluation judges, as its
    `target_materialization_data`. Dagster leaves it unnamed for the evaluations a checks step yields (one
    partition or several), and the Checks tab's partition grid then counts the verdict as missing (it shows a
    verdict only when it targets the partition's latest materialization). None where the asset (partition) was
    never materialized, and unless PGX_CHECK_TARGETS is on: the private name it needs is opt-in (config/aws.toml
    turns it off)."""
    if not get_settings().check_targets:
        return None
    from pgx_dagster.ops.dagster_private import check_target  # only when asked: no private name otherwise

    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    if not records:
        return None
    latest = records[0]
    return check_target(latest.storage_id, latest.run_id, latest.timestamp)

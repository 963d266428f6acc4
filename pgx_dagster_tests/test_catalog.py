"""The catalogue carries the data dictionary: every column an asset writes is in Dagster's column schema of its
materialization, with its description from the one data dictionary (sql/data_dictionary.csv) - the same file
a cohort's export ships. Links a browser opens: a base URL (PGX_LAKE_URL) or, on S3, a presigned URL."""

from __future__ import annotations

import csv
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import duckdb
import pytest

from pgx_dagster import reporting
from pgx_dagster.reporting import DATA_DICTIONARY, browser_url, column_descriptions, files_markdown, markdown_table
from pgx_dagster_tests.services import moto_s3


def test_the_data_dictionary_describes_each_column_once():
    with DATA_DICTIONARY.open(newline="") as f:
        rows = list(csv.DictReader(f))
    names = [r["column"] for r in rows]
    assert len(names) == len(set(names)), "a column described twice"
    assert all(r["description"].strip() for r in rows), [r["column"] for r in rows if not r["description"].strip()]


def written_columns(path: str) -> list[str]:
    """The columns of what the asset wrote at `path`: a Parquet file, or a folder of them (any depth)."""
    files = [path] if path.endswith(".parquet") else [str(p) for p in sorted(Path(path).rglob("*.parquet"))]
    assert files, path
    return [r[0] for r in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet({files[:1]}, hive_partitioning = false)")
            .fetchall()]  # fmt: skip


def test_every_materialized_asset_has_a_described_column_schema_equal_to_what_it_wrote(pipeline):
    from dagster import DagsterInstance

    from pgx_dagster.definitions import defs

    described = column_descriptions()
    graph = defs.resolve_asset_graph()
    seen = {}
    with DagsterInstance.from_config(str(pipeline.home)) as instance:
        for key in sorted(graph.materializable_asset_keys, key=lambda k: k.to_user_string()):
            record = instance.get_latest_materialization_event(key)
            assert record is not None, key
            meta = record.asset_materialization.metadata
            name = key.to_user_string()
            if "dagster/column_schema" not in meta:
                assert name == "cohort_report", f"{name}: no column schema"  # an HTML page, no table
                continue
            columns = meta["dagster/column_schema"].value.columns
            missing = [c.name for c in columns if not (c.description or "").strip()]
            assert not missing, f"{name}: columns without a description: {missing}"
            assert {c.name: c.description for c in columns} == {c.name: described[c.name] for c in columns}
            assert [c.name for c in columns] == written_columns(meta["path"].value), name
            seen[name] = len(columns)
    assert len(seen) == len(graph.materializable_asset_keys) - 1, seen  # every asset but the report


def test_the_export_dictionary_is_the_catalogue_dictionary(pipeline):
    from pgx_dagster import datasets
    from pgx_dagster.datasets import export_file
    from pgx_dagster.lake import LakeResource

    name = "opioid_ed"
    dataset = datasets.export(name)
    path = dataset.path(LakeResource(lake_root=str(pipeline.lake)), filename=export_file(name, "dictionary"))
    with open(path, newline="") as f:
        exported = {r["column"]: r["description"] for r in csv.DictReader(f)}
    assert exported and all(exported.values())
    assert exported == {c: column_descriptions()[c] for c in exported}


def test_links_a_browser_opens(monkeypatch, tmp_path):
    monkeypatch.delenv("PGX_LAKE_URL", raising=False)
    assert browser_url("/data/lake", "/data/lake/out/exports/x/report/x_report.html") is None  # a local file: none
    listing = files_markdown("/data/lake", {"report": "/data/lake/out/r.html"})
    assert listing == "- report: `/data/lake/out/r.html`"  # the path as text, for a shell
    monkeypatch.setenv("PGX_LAKE_URL", "https://lake.example.org/pgx/")
    url = browser_url("/data/lake", "/data/lake/out/cohorts/a/age_band=75%2B/x y.parquet")
    assert url == "https://lake.example.org/pgx/out/cohorts/a/age_band%3D75%252B/x%20y.parquet"
    assert files_markdown("/data/lake", {"report": "/data/lake/r.html"}) == (
        "- [report](https://lake.example.org/pgx/r.html) `/data/lake/r.html`"
    )
    table = markdown_table([{"a": 1.23456, "b": "x|y"}, {"a": None, "b": float("nan")}], ["a", "b"])
    assert table.splitlines() == ["| a | b |", "| --- | --- |", "| 1.23 | x\\|y |", "|  |  |"]


def test_a_report_on_s3_gets_a_presigned_url_that_opens(tmp_path, monkeypatch):
    from pgx_dagster.lake import s3_client

    monkeypatch.delenv("PGX_LAKE_URL", raising=False)
    with moto_s3(tmp_path / "logs", adopt=True):
        s3_client().create_bucket(Bucket="lake")
        s3_client().put_object(Bucket="lake", Key="pgx/out/exports/c/report/c_report.html", Body=b"<html>ok</html>")
        monkeypatch.setenv("PGX_PRESIGN_SECONDS", "600")
        url = browser_url("s3://lake/pgx", "s3://lake/pgx/out/exports/c/report/c_report.html")
        assert url.startswith("http://127.0.0.1:")
        query = parse_qs(urlparse(url).query)  # SigV4 names the lifetime, SigV2 the moment it ends
        if "X-Amz-Expires" in query:
            lifetime = int(query["X-Amz-Expires"][0])
        else:
            lifetime = int(query["Expires"][0]) - time.time()
        assert 590 <= lifetime <= 600
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == b"<html>ok</html>"
        monkeypatch.setenv("PGX_PRESIGN_SECONDS", "0")
        with pytest.raises(ValueError, match="PGX_PRESIGN_SECONDS"):
            browser_url("s3://lake/pgx", "s3://lake/pgx/x.html")
    assert reporting.DEFAULT_PRESIGN_SECONDS == 7 * 24 * 3600


def test_the_selection_of_a_backfill_is_summed_up_by_partitioning():
    from pgx_dagster.ops.backfill import BackfillStatus, Partitioning, selection_summary

    claims = Partitioning("age_band|event_year", tuple(f"{b}|2019" for b in "abcde"))
    partitionings = {"silver": claims, "events": claims, "cohort": claims, "intake": Partitioning("", ("000",)),
                     "export": Partitioning("", ("opioid_ed", "other")), "index": Partitioning("", ())}  # fmt: skip

    def counts(n: int) -> dict[str, int]:
        return {"targeted": n, "running": 0, "done": 0, "failed": 0}

    everything = BackfillStatus("b1", "REQUESTED", {a: counts(len(p.keys) or 1) for a, p in partitionings.items()})
    assert selection_summary(partitionings, everything) == (
        "19 asset-partitions: all 5 age_band|event_year partitions x 3 assets; all 2 partitions (like opioid_ed) x "
        "1 asset; partition 000 x 1 asset; 1 asset unpartitioned"
    )
    two = BackfillStatus("b2", "REQUESTED", {"silver": counts(2), "events": counts(2), "cohort": counts(5)})
    assert selection_summary(partitionings, two) == (
        "9 asset-partitions: all 5 age_band|event_year partitions x 1 asset; 2 of 5 age_band|event_year partitions x "
        "2 assets"
    )

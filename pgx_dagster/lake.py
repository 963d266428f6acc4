"""Lake paths and atomic partition publishing: the one place that knows the layout.

Layout (kept from the seed so existing consumers keep working):
  {raw}/medical_claims/*.parquet, pharmacy_claims/, member_eligibility/, member_linkage/
  {lake}/staging/{medical,pharmacy}/age_band=../event_year=../*.parquet      intake output
  {lake}/staging/person_index/person_index.parquet
  {lake}/quarantine/{dataset}/...                                             rejected rows + reason
  {lake}/silver/{medical,pharmacy}/age_band=../event_year=../{name}.parquet
  {lake}/silver/member_demographics/member_demographics.parquet
  {lake}/silver/imputed/{medical,pharmacy}_partitioned/age_band=../event_year=../{name}.parquet
  {lake}/gold/events/age_band=../event_year=../events.parquet
  {lake}/gold/cohorts/{cohort}/age_band=../event_year=../{cohort}_cohort.parquet
Partition folders use Hive naming with DuckDB's escaping ('75+' is written 'age_band=75%2B'),
so `read_parquet(..., hive_partitioning=true)` reads the values back exactly.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from urllib.parse import quote as urlquote

from dagster import ConfigurableResource
from pydantic import Field

from pgx_dagster.settings import DEFAULT_LAKE_ROOT, DEFAULT_RAW_ROOT

RAW_TABLES = ("medical_claims", "pharmacy_claims", "member_eligibility", "member_linkage")


def hive_segment(name: str, value: str | int) -> str:
    return f"{name}={urlquote(str(value), safe='-_.')}"


def partition_suffix(age_band: str, event_year: int) -> str:
    return f"{hive_segment('age_band', age_band)}/{hive_segment('event_year', event_year)}"


class LakeResource(ConfigurableResource):
    """Where raw inputs are read and every dataset is written."""

    raw_root: str = Field(default=DEFAULT_RAW_ROOT, description="raw extract folder (PGX_RAW_ROOT)")
    lake_root: str = Field(default=DEFAULT_LAKE_ROOT, description="lake root folder (PGX_LAKE_ROOT)")
    extract_date: str = Field(
        default="", description="date the raw extract was cut, YYYY-MM-DD (PGX_EXTRACT_DATE); default today"
    )

    def extract_day(self) -> date:
        """Service dates after this are impossible. Defaults to today."""
        if not self.extract_date:
            return date.today()
        try:
            return date.fromisoformat(self.extract_date)
        except ValueError as exc:
            raise ValueError(f"PGX_EXTRACT_DATE must be YYYY-MM-DD, got {self.extract_date!r}") from exc

    # ---- paths ---------------------------------------------------------------------------------
    def raw_glob(self, table: str) -> str:
        if table not in RAW_TABLES:
            raise ValueError(f"unknown raw table {table!r}; expected one of {RAW_TABLES}")
        return f"{self.raw_root.rstrip('/')}/{table}/*.parquet"

    def path(self, *parts: str) -> str:
        return "/".join([self.lake_root.rstrip("/"), *parts])

    def dataset_dir(self, dataset: str) -> str:
        return self.path(dataset)

    def partition_dir(self, dataset: str, age_band: str, event_year: int) -> str:
        return self.path(dataset, partition_suffix(age_band, event_year))

    def partition_file(self, dataset: str, age_band: str, event_year: int, filename: str) -> str:
        return f"{self.partition_dir(dataset, age_band, event_year)}/{filename}"

    def all_partitions_glob(self, dataset: str, filename: str = "*.parquet") -> str:
        # Named patterns, so hidden staging folders (".event_year=...") never match.
        return self.path(dataset, "age_band=*", "event_year=*", filename)

    # ---- checks on inputs ------------------------------------------------------------------------
    def require_raw(self) -> None:
        missing = [t for t in RAW_TABLES if not list(Path(self.raw_root, t).glob("*.parquet"))]
        if missing:
            raise FileNotFoundError(
                f"raw input missing under {self.raw_root!r}: {', '.join(missing)} "
                "(set PGX_RAW_ROOT, or generate data with `pgx-synth --out DIR`)"
            )

    def exists(self, path: str) -> bool:
        return Path(path).exists()

    def files(self, pattern: str) -> list[str]:
        return sorted(glob.glob(pattern))

    # ---- atomic publishing -----------------------------------------------------------------------
    @contextmanager
    def publish_dir(self, final_dir: str) -> Iterator[str]:
        """Yield a fresh staging folder; on success it replaces `final_dir` whole.

        Readers see the old folder or the new one, never a half-written one, and files of an
        earlier run do not linger. On error the staging folder is removed and `final_dir` is
        left as it was."""
        final = Path(final_dir)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".{final.name}.staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            yield str(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        trash = final.parent / f".{final.name}.old-{uuid.uuid4().hex}"
        if final.exists():
            os.replace(final, trash)
        os.replace(staging, final)
        shutil.rmtree(trash, ignore_errors=True)

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

Either root may be a local folder or `s3://bucket/prefix`: DuckDB reads and writes S3 through httpfs,
and the object work here (listing, existence, replacing a partition's prefix) goes through
dagster-aws's S3Resource (boto3: the AWS default credential chain, AWS_ENDPOINT_URL honoured).
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import os
import re
import shutil
import tempfile
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
# Where each raw table may be found under PGX_RAW_ROOT, in order of preference (first that exists).
# The seed's layouts are accepted so existing lakes keep working: its partitioned imputed silver
# (the seed's preferred input) and its legacy non-partitioned silver glob.
RAW_CANDIDATES: dict[str, list[tuple[str, str]]] = {
    "medical_claims": [
        ("medical_claims/*.parquet", "the pgx raw layout"),
        (
            "silver/imputed/medical_partitioned/age_band=*/event_year=*/*.parquet",
            "the seed's partitioned imputed silver layout (its preferred input)",
        ),
        ("silver/medical/*.parquet", "the seed's legacy non-partitioned silver glob"),
    ],
    "pharmacy_claims": [
        ("pharmacy_claims/*.parquet", "the pgx raw layout"),
        (
            "silver/imputed/pharmacy_partitioned/age_band=*/event_year=*/*.parquet",
            "the seed's partitioned imputed silver layout (its preferred input)",
        ),
        ("silver/pharmacy/*.parquet", "the seed's legacy non-partitioned silver glob"),
    ],
    "member_eligibility": [("member_eligibility/*.parquet", "the pgx raw layout")],
    "member_linkage": [("member_linkage/*.parquet", "the pgx raw layout")],
}
CHECKPOINT = "_checkpoint.json"


def is_s3(path: str) -> bool:
    return str(path).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"not an s3://bucket/prefix URI: {uri!r}")
    return bucket, key


@functools.cache
def s3_client():
    """boto3's S3 client through dagster-aws (default credential chain; AWS_ENDPOINT_URL honoured)."""
    from dagster_aws.s3 import S3Resource

    return S3Resource().get_client()


def _resolve(candidates: tuple[tuple[str, str], ...], files) -> tuple[str, str]:
    """The first candidate with files; remembered per process once found (listing S3 is not free)."""
    if candidates in _RESOLVED:
        return _RESOLVED[candidates]
    if len(candidates) == 1:
        return candidates[0]
    for candidate in candidates:
        if files(candidate[0]):
            _RESOLVED[candidates] = candidate
            return candidate
    return candidates[0]


_RESOLVED: dict[tuple, tuple[str, str]] = {}


def _list_keys(bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def _replace_prefix(local_dir: str, final_uri: str) -> None:
    bucket, prefix = split_s3(final_uri.rstrip("/") + "/")
    old = set(_list_keys(bucket, prefix))
    files = sorted(Path(local_dir).rglob("*"), key=lambda p: (p.name == CHECKPOINT, str(p)))
    new = set()
    for f in files:
        if f.is_file():
            key = prefix + f.relative_to(local_dir).as_posix()
            s3_client().upload_file(str(f), bucket, key)
            new.add(key)
    stale = sorted(old - new)
    for i in range(0, len(stale), 1000):
        s3_client().delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale[i : i + 1000]]})


def hive_segment(name: str, value: str | int) -> str:
    return f"{name}={urlquote(str(value), safe='-_.')}"


def partition_suffix(age_band: str, event_year: int) -> str:
    return f"{hive_segment('age_band', age_band)}/{hive_segment('event_year', event_year)}"


class LakeResource(ConfigurableResource):
    """Where raw inputs are read and every dataset is written."""

    raw_root: str = Field(
        default=DEFAULT_RAW_ROOT,
        description="raw extract folder (PGX_RAW_ROOT); for the tuva and desynpuf formats several, comma-separated",
    )
    raw_format: str = Field(default="pgx", description="input format: pgx | tuva | desynpuf (PGX_RAW_FORMAT)")
    opioid_ndc_file: str = Field(
        default="",
        description="opioid NDC / MME conversion file in the layout of sql/codesets/opioid_ndc.csv, e.g. built "
        "from the CDC file (PGX_OPIOID_NDC_FILE); default the shipped placeholder list",
    )
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

    raw_overrides: dict[str, str] = Field(
        default_factory=dict,
        description="exact path or glob per raw table (PGX_RAW_MEDICAL, PGX_RAW_PHARMACY, PGX_RAW_ELIGIBILITY, "
        "PGX_RAW_LINKAGE); used as given",
    )

    # ---- paths ---------------------------------------------------------------------------------
    def raw_roots(self) -> list[str]:
        return [r.strip().rstrip("/") for r in self.raw_root.split(",") if r.strip()]

    def raw_candidates(self, table: str) -> list[tuple[str, str]]:
        """(path, why) in order of preference for one raw table."""
        if table not in RAW_TABLES:
            raise ValueError(f"unknown raw table {table!r}; expected one of {RAW_TABLES}")
        if self.raw_overrides.get(table):
            return [(self.raw_overrides[table], "set explicitly (PGX_RAW_* override)")]
        root = self.raw_roots()[0]
        return [(f"{root}/{pattern}", why) for pattern, why in RAW_CANDIDATES[table]]

    def raw_glob(self, table: str) -> str:
        """The path the pipeline reads for a raw table: the first candidate that has files (or, if none
        has, the first candidate, so the error names the expected place)."""
        return _resolve(tuple(self.raw_candidates(table)), self.files)[0]

    def path(self, *parts: str) -> str:
        return "/".join([self.lake_root.rstrip("/"), *parts])

    def partition_dir(self, dataset: str, age_band: str, event_year: int) -> str:
        return self.path(dataset, partition_suffix(age_band, event_year))

    def partition_file(self, dataset: str, age_band: str, event_year: int, filename: str) -> str:
        return f"{self.partition_dir(dataset, age_band, event_year)}/{filename}"

    def all_partitions_glob(self, dataset: str, filename: str = "*.parquet") -> str:
        # Named patterns, so hidden staging folders (".event_year=...") never match.
        return self.path(dataset, "age_band=*", "event_year=*", filename)

    # ---- objects and files ------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        if not is_s3(path):
            return Path(path).exists()
        bucket, key = split_s3(path)
        return bool(s3_client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount"))

    def files(self, pattern: str) -> list[str]:
        """Paths matching a glob (`*` within one path segment), local or on S3."""
        if not is_s3(pattern):
            return sorted(glob.glob(pattern))
        bucket, key_pattern = split_s3(pattern)
        prefix = re.split(r"[*?\[]", key_pattern, maxsplit=1)[0]
        regex = re.compile(fnmatch.translate(key_pattern).replace(".*", "[^/]*"))
        return sorted(f"s3://{bucket}/{k}" for k in _list_keys(bucket, prefix) if regex.match(k))

    # ---- atomic publishing -----------------------------------------------------------------------
    @contextmanager
    def publish_dir(self, final_dir: str) -> Iterator[str]:
        """Yield a fresh local staging folder; on success it replaces `final_dir` whole.

        Local: the folder is renamed into place - readers see the old folder or the new one.
        S3: every file is uploaded as one object (a PUT, or a multipart upload that appears only
        when complete), `_checkpoint.json` last as the commit marker, then objects of an earlier
        run that the new one does not have are deleted. On error nothing under `final_dir` changes."""
        if is_s3(final_dir):
            staging = tempfile.mkdtemp(prefix="pgx_publish_")
            try:
                yield staging
                _replace_prefix(staging, final_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return
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

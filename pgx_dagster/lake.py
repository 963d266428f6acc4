"""Where the pipeline reads and writes: the raw and lake roots (local folders or s3://bucket/prefix), the
object operations on them, and atomic publishing of a folder. Which datasets live where is
`datasets.py`; which raw files are read is `raw_inputs.py`.

DuckDB reads and writes S3 through httpfs; the object work here (listing, existence, replacing a
folder's objects) goes through dagster-aws's S3Resource (boto3: the AWS default credential chain,
AWS_ENDPOINT_URL honoured).
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

from dagster import ConfigurableResource
from pydantic import Field

from pgx_dagster.settings import DEFAULT_LAKE_ROOT, DEFAULT_RAW_ROOT

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
        "by `pgx build-ndc-map` (PGX_OPIOID_NDC_FILE); default the shipped placeholder list",
    )
    ndc_ingredient_file: str = Field(
        default="",
        description="NDC -> ingredient map in the layout of sql/codesets/ndc_ingredient.csv, e.g. built by "
        "`pgx build-ndc-map` (PGX_NDC_INGREDIENT_FILE); default the shipped placeholder map",
    )
    genotypes: str = Field(
        default="",
        description="table of person_id, gene, phenotype (CPIC terms), CSV or Parquet, a path or glob "
        "(PGX_GENOTYPES); default <PGX_RAW_ROOT>/genotypes/*.parquet when it exists; none: no phenotypes",
    )
    lake_root: str = Field(default=DEFAULT_LAKE_ROOT, description="lake root folder (PGX_LAKE_ROOT)")
    extract_date: str = Field(
        default="", description="date the raw extract was cut, YYYY-MM-DD (PGX_EXTRACT_DATE); default today"
    )
    raw_overrides: dict[str, str] = Field(
        default_factory=dict,
        description="exact path or glob per raw table (PGX_RAW_MEDICAL, PGX_RAW_PHARMACY, PGX_RAW_ELIGIBILITY, "
        "PGX_RAW_LINKAGE); used as given",
    )

    def extract_day(self) -> date:
        """Service dates after this are impossible. Defaults to today."""
        if not self.extract_date:
            return date.today()
        try:
            return date.fromisoformat(self.extract_date)
        except ValueError as exc:
            raise ValueError(f"PGX_EXTRACT_DATE must be YYYY-MM-DD, got {self.extract_date!r}") from exc

    def raw_roots(self) -> list[str]:
        return [r.strip().rstrip("/") for r in self.raw_root.split(",") if r.strip()]

    # ---- objects and files ------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        if not is_s3(path):
            return Path(path).exists()
        bucket, key = split_s3(path)
        return bool(s3_client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount"))

    def read_text(self, path: str) -> str | None:
        """A small file's text (a checkpoint, a report), local or on S3; None when it does not exist."""
        if not is_s3(path):
            return Path(path).read_text() if Path(path).is_file() else None
        bucket, key = split_s3(path)
        try:
            return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        except s3_client().exceptions.NoSuchKey:
            return None

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

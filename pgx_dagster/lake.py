"""Where the pipeline reads and writes: the raw and lake roots (local folders or s3://bucket/prefix), the
object operations on them, and atomic publishing of a folder. Which datasets live where is
`datasets.py`; which raw files are read is `raw_inputs.py`.

DuckDB reads and writes S3 through httpfs; the object work here (listing, existence, replacing a
folder's objects) goes through boto3 directly (the AWS default credential chain, AWS_ENDPOINT_URL
honoured): dagster-aws's S3Resource sets retries but no connect or read timeout, and an endpoint that
stops answering must fail a request in seconds, not hang a step.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import fnmatch
import functools
import glob
import multiprocessing
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from dagster import ConfigurableResource, Failure, get_dagster_logger
from pydantic import Field

from pgx_dagster.forksafe import exit_with_parent, remove_stale_temp
from pgx_dagster.settings import DEFAULT_LAKE_ROOT, DEFAULT_RAW_ROOT, SettingError, instance_warning, s3_timeouts

CHECKPOINT = "_checkpoint.json"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h


def is_s3(path: str) -> bool:
    return str(path).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"not an s3://bucket/prefix URI: {uri!r}")
    return bucket, key


@functools.cache
def s3_client():
    """boto3's S3 client: the default credential chain, AWS_ENDPOINT_URL honoured, and timeouts so an
    endpoint that does not answer fails a request in under 30 s (settings.s3_timeouts)."""
    import boto3
    from botocore.config import Config

    connect, read, attempts = s3_timeouts()
    config = Config(connect_timeout=connect, read_timeout=read, retries={"max_attempts": attempts, "mode": "standard"})
    return boto3.client("s3", config=config)


def s3_endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"


class S3Unavailable(Failure):
    """S3 did not answer or refused: one line naming the endpoint, the object and the cause. Transient
    causes (no connection, a timeout) are left to the step's retries."""

    def __init__(self, what: str, error: Exception, transient: bool):
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        super().__init__(
            description=f"S3 at {s3_endpoint()}: {what}: {cause}. Check AWS_ENDPOINT_URL, the network and the "
            "credentials (`pgx validate-inputs` tries the raw paths).",
            allow_retries=transient,
        )


@contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """boto3 / botocore errors as one-line S3Unavailable failures."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    try:
        yield
    except BotoConnectionError as error:  # connect or read timeout, endpoint unreachable
        raise S3Unavailable(what, error, transient=True) from None
    except (ClientError, BotoCoreError) as error:  # denied, no such bucket, no credentials
        raise S3Unavailable(what, error, transient=False) from None


def _list_keys(bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    with s3_errors(f"listing s3://{bucket}/{prefix}"):
        for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def _replace_prefix(local_dir: str, final_uri: str) -> None:
    bucket, prefix = split_s3(final_uri.rstrip("/") + "/")
    old = set(_list_keys(bucket, prefix))
    files = sorted(Path(local_dir).rglob("*"), key=lambda p: (p.name == CHECKPOINT, str(p)))
    new = set()
    with s3_errors(f"publishing s3://{bucket}/{prefix}"):
        for f in files:
            if f.is_file():
                key = prefix + f.relative_to(local_dir).as_posix()
                s3_client().upload_file(str(f), bucket, key)
                new.add(key)
        stale = sorted(old - new)
        for i in range(0, len(stale), 1000):
            s3_client().delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale[i : i + 1000]]})


LOCK_STALE_SECONDS = 600  # an S3 publish lock older than this was left by a process that died
LOCK_TAKEN = ("PreconditionFailed", "ConditionalRequestConflict")  # S3's answers to a conditional PUT that lost


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux renameat2 with RENAME_EXCHANGE), so a reader of either
    path finds one version or the other, never nothing. False where the C library or file system cannot."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@functools.cache
def _warn_no_exchange(folder: str) -> None:
    """Once per process and parent folder: say that readers may find partitions missing while they publish."""
    get_dagster_logger().warning(
        f"{folder}: this system cannot swap two folders in one rename (Linux renameat2 RENAME_EXCHANGE); partitions "
        "are replaced with two renames, and a reader listing them at that moment can find one missing"
    )


@contextmanager
def _publish_lock(final_dir: str) -> Iterator[None]:
    """One publisher of a folder at a time. Two runs materializing the same partition at once (two
    backfills, a re-run racing a retry) then each replace it whole, one after the other: readers see
    one complete version, never files of both. Local: an exclusive flock on a lock file beside the
    folder. S3: a lock object beside the folder's prefix, created only if absent (a conditional PUT);
    one older than LOCK_STALE_SECONDS is taken over."""
    if not is_s3(final_dir):
        final = Path(final_dir)
        with open(final.parent / f".{final.name}.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    bucket, key = split_s3(final_dir.rstrip("/") + ".lock")
    client = s3_client()
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    with s3_errors(f"locking s3://{bucket}/{key}"):
        while True:
            try:
                client.put_object(Bucket=bucket, Key=key, Body=owner.encode(), IfNoneMatch="*")
                break
            except client.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") not in (
                    "PreconditionFailed",
                    "ConditionalRequestConflict",
                ):
                    raise
                try:
                    held = client.head_object(Bucket=bucket, Key=key)
                    if time.time() - held["LastModified"].timestamp() > LOCK_STALE_SECONDS:
                        client.delete_object(Bucket=bucket, Key=key)
                except client.exceptions.ClientError:
                    pass  # released meanwhile
                time.sleep(0.2)
    try:
        yield
    finally:
        with s3_errors(f"unlocking s3://{bucket}/{key}"):
            client.delete_object(Bucket=bucket, Key=key)


class LakeResource(ConfigurableResource):
    """Where raw inputs are read and every dataset is written."""

    raw_root: str = Field(
        default=DEFAULT_RAW_ROOT,
        description="raw extract folder (PGX_RAW_ROOT); for the tuva and desynpuf formats several, comma-separated",
    )
    raw_format: str = Field(default="pgx", description="input format: pgx | tuva | desynpuf | apcd (PGX_RAW_FORMAT)")
    raw_delimiter: str = Field(default="auto", description="apcd format: auto | pipe | comma | tab (PGX_RAW_DELIMITER)")
    apcd_layout: str = Field(
        default="", description="apcd format: folder of <table>_columns.csv for header-less files (PGX_APCD_LAYOUT)"
    )
    apcd_elements: str = Field(
        default="", description="apcd format: element map, layout of sql/formats/apcd/elements.csv (PGX_APCD_ELEMENTS)"
    )
    opioid_ndc_file: str = Field(
        default="",
        description="opioid NDC / MME conversion file in the layout of sql/codesets/opioid_ndc.csv, e.g. built "
        "by `pgx build-opioid-ndc` (PGX_OPIOID_NDC_FILE); default CDC's 2017 list as shipped",
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
        except ValueError:
            given = self.extract_date
            raise SettingError(f"PGX_EXTRACT_DATE={given!r} is not valid: expected a date YYYY-MM-DD") from None

    def setup_for_execution(self, context) -> None:
        """At the start of every step that writes the lake. In a process multiprocessing started - a step of
        the multiprocess executor, a run the code server started (Dagster's default launcher) - the step
        exits with its parent (forksafe.py); never in a process started otherwise (`dagster asset materialize`,
        a notebook), which its parent may rightly outlive. And a run recorded where nobody will find it again
        (an in-memory instance, or `dagster dev`'s temporary one) says so in its log: the lake is written all
        the same (settings.instance_warning)."""
        if multiprocessing.parent_process() is not None:
            exit_with_parent()
        instance = getattr(context, "instance", None)
        # Only in a run: the pgx command builds this resource outside any run too (its summary), on no instance.
        if instance is not None and getattr(context, "run", None) is not None:
            root = getattr(instance, "root_directory", None) if not instance.is_ephemeral else None
            message = instance_warning(instance.is_ephemeral, root)
            if message:
                context.log.warning(message)

    def raw_roots(self) -> list[str]:
        return [r.strip().rstrip("/") for r in self.raw_root.split(",") if r.strip()]

    # ---- objects and files ------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        if not is_s3(path):
            return Path(path).exists()
        bucket, key = split_s3(path)
        with s3_errors(f"looking for {path}"):
            return bool(s3_client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount"))

    def read_text(self, path: str) -> str | None:
        """A small file's text (a checkpoint, a report), local or on S3; None when it does not exist."""
        if not is_s3(path):
            return Path(path).read_text() if Path(path).is_file() else None
        bucket, key = split_s3(path)
        with s3_errors(f"reading {path}"):
            try:
                return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            except s3_client().exceptions.NoSuchKey:
                return None

    def head(self, path: str, size: int = 65536) -> bytes:
        """The first `size` bytes of a file, local or on S3 (a ranged GET: a raw file's first line)."""
        if not is_s3(path):
            with open(path, "rb") as f:
                return f.read(size)
        bucket, key = split_s3(path)
        with s3_errors(f"reading {path}"):
            return s3_client().get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{size - 1}")["Body"].read()

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

        Local: the new folder and the old one swap places in one rename (Linux RENAME_EXCHANGE), so a
        reader that listed the old folder's files finds the new version's file of each name, never a gap
        (a check reading its sibling partitions while one is re-published). Where the system cannot swap,
        two renames leave a moment with no folder.
        S3: every file is uploaded as one object (a PUT, or a multipart upload that appears only
        when complete), `_checkpoint.json` last as the commit marker, then objects of an earlier
        run that the new one does not have are deleted. On error nothing under `final_dir` changes."""
        pid = os.getpid()
        if is_s3(final_dir):
            remove_stale_temp(None, "pgx_publish_")
            staging = tempfile.mkdtemp(prefix=f"pgx_publish_{pid}_")
            try:
                yield staging
                with _publish_lock(final_dir):
                    _replace_prefix(staging, final_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return
        final = Path(final_dir)
        final.parent.mkdir(parents=True, exist_ok=True)
        # what killed publishers of this folder left behind (their staging and trash folders)
        remove_stale_temp(str(final.parent), f".{final.name}.staging-")
        remove_stale_temp(str(final.parent), f".{final.name}.old-")
        staging = final.parent / f".{final.name}.staging-{pid}_{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            yield str(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        trash = final.parent / f".{final.name}.old-{pid}_{uuid.uuid4().hex}"
        with _publish_lock(final_dir):  # the swap, one publisher at a time
            if not final.exists():
                os.replace(staging, final)
            elif _exchange(staging, final):
                trash = staging  # it holds the old version now
            else:
                _warn_no_exchange(str(final.parent))
                os.replace(final, trash)
                os.replace(staging, final)
        shutil.rmtree(trash, ignore_errors=True)

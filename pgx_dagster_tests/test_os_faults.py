"""What the machine refuses fails a step at once, naming the cause (issue 34): a lake folder this user may not
write, a read-only file system, a full disk, S3 refusing the credentials. Each run here meets the real fault
(sysfs, a tmpfs mounted read-only or filled up, /dev/full, an HTTP server answering 403), never a mocked one,
and asserts one attempt of the step - no retry - and a description with the folder, its setting and the cause.

Mounting needs root with CAP_SYS_ADMIN: those cases skip, saying so, where it is missing. The sysfs case needs
no privilege (sysfs refuses new folders at its root, to root too), so one case runs on every Linux machine."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, Definitions, Failure, define_asset_job

from pgx_dagster.definitions import defs
from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.execution import OSFault, os_fault, os_faults
from pgx_dagster.lake import LakeResource
from pgx_dagster.ops.materialize import write_instance
from pgx_dagster.ops.synth import generate
from pgx_dagster.settings import REPO_ROOT, event_years
from pgx_dagster.stages.common import step_folders

BIN = Path(sys.executable).parent
# How each refusal is put, after the folder: the words and the OS message.
STATE = {
    errno.EROFS: "is read-only",
    errno.ENOSPC: "is full",
    errno.EDQUOT: "is over its disk quota",
    errno.EACCES: "refuses this user",
    errno.EPERM: "refuses this user",
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("os_fault_raw")
    generate(100, event_years(), 15, out)
    return out


def sysfs_lake() -> tuple[Path, int]:
    """A lake root that no user may create - a folder at sysfs's root - and the errno creating it gives here
    (EPERM on a read-write sysfs, EROFS where the container mounts /sys read-only)."""
    lake = Path(f"/sys/pgx-lake-{uuid.uuid4().hex[:8]}")
    try:
        lake.mkdir()
    except OSError as error:
        if error.errno in STATE:
            return lake, error.errno
        pytest.skip(f"creating {lake} failed with {error}, not a refusal of the file system")
    lake.rmdir()
    pytest.skip(f"{lake} could be created: sysfs is not mounted at /sys here")


@contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at `folder` with mount `options`, unmounted afterwards; skips where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "pgx-test", str(folder)],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
    except FileNotFoundError:
        pytest.skip("no `mount` command here")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True, timeout=30)


def fill(folder: Path) -> None:
    """Write into `folder` until its file system has no byte left."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
            f.truncate(f.tell())  # keep what was written; the close must not fail on the rest


def person_index_run(raw: Path, lake: Path):
    """person_index - the first step of the graph - materialized in this process on a throwaway instance."""
    job = define_asset_job("person_index_only", selection=[AssetKey("person_index")])
    resources = {"lake": LakeResource(raw_root=str(raw), lake_root=str(lake)), "duckdb": DuckDBWorker()}
    job_defs = Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job], resources=resources)
    with DagsterInstance.ephemeral() as instance:
        return job_defs.resolve_job_def("person_index_only").execute_in_process(instance=instance, raise_on_error=False)


def failed_once(events) -> str:
    """The step failed on its first attempt, with no retry: its failure's description."""
    types = [e.event_type for e in events if e.step_key == "person_index"]
    assert types.count(DagsterEventType.STEP_START) == 1
    assert DagsterEventType.STEP_UP_FOR_RETRY not in types and DagsterEventType.STEP_RESTARTED not in types
    failure = next(e for e in events if e.event_type == DagsterEventType.STEP_FAILURE)
    data = failure.event_specific_data
    assert data.error.cls_name == "OSFault" and data.user_failure_data is not None
    return data.user_failure_data.description


def assert_names(description: str, lake: Path, code: int) -> None:
    assert description.startswith(f"The lake folder {lake} (PGX_LAKE_ROOT"), description
    assert f"{STATE[code]} ({os.strerror(code)}" in description, description
    assert "point PGX_LAKE_ROOT at" in description and "Not retried" in description, description


# ---- runs that meet the fault ----------------------------------------------------------------------------------
def test_a_lake_folder_this_user_may_not_create_fails_the_step_at_once_naming_it(raw):
    lake, code = sysfs_lake()
    result = person_index_run(raw, lake)
    assert not result.success
    assert_names(failed_once(result.all_events), lake, code)


def test_a_read_only_lake_fails_the_step_at_once_naming_it(raw, tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as mounted:
        lake = mounted / "lake"
        result = person_index_run(raw, lake)
    assert not result.success
    description = failed_once(result.all_events)
    assert_names(description, lake, errno.EROFS)
    assert "mount it read-write, or point PGX_LAKE_ROOT at a writable folder" in description


def test_a_full_lake_disk_fails_the_step_at_once_naming_it_and_leaves_nothing_half_written(raw, tmp_path):
    with tmpfs(tmp_path / "small", "size=256k") as mounted:
        fill(mounted)
        lake = mounted / "lake"
        result = person_index_run(raw, lake)
        left = sorted(str(p.relative_to(lake)) for p in lake.rglob("*") if p.is_file() or ".staging-" in p.name)
    assert not result.success
    description = failed_once(result.all_events)
    assert_names(description, lake, errno.ENOSPC)
    assert f", at {lake}/" in description  # the file DuckDB could not write
    assert left == []  # the staging folder it wrote into was removed


def test_dagster_asset_materialize_prints_the_cause_in_the_console_and_runs_the_step_once(raw, tmp_path):
    lake, code = sysfs_lake()
    home = write_instance(tmp_path / "dagster_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGX_")}
    env |= {"DAGSTER_HOME": str(home), "PGX_RAW_ROOT": str(raw), "PGX_LAKE_ROOT": str(lake)}
    command = [str(BIN / "dagster"), "asset", "materialize", "-m", "pgx_dagster.definitions", "--select",
               "person_index"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
    console = done.stdout + done.stderr
    assert done.returncode != 0
    lines = [line for line in console.splitlines() if line.startswith("pgx_dagster.execution.OSFault: ")]
    assert lines, console[-3000:]
    assert_names(lines[0].removeprefix("pgx_dagster.execution.OSFault: "), lake, code)
    assert "RetryRequested" not in console and "Exceeded max_retries" not in console
    with DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event is not None]
    assert_names(failed_once(events), lake, code)


def test_pgx_on_an_instance_folder_it_may_not_create_says_so_in_one_line(raw):
    home, code = sysfs_lake()  # the same refusal, met by the command itself before any run
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGX_")}
    env |= {"DAGSTER_HOME": str(home), "PGX_RAW_ROOT": str(raw), "PGX_LAKE_ROOT": str(raw.parent / "lake")}
    done = subprocess.run([str(BIN / "pgx"), "materialize"], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=120)  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"pgx: The folder of {home} {STATE[code]} ({os.strerror(code)}"
        + (f", uid {os.getuid()}" if code in (errno.EACCES, errno.EPERM) else "")
        + f"): {'mount it read-write' if code == errno.EROFS else 'give the user the runs run as access to it'}, "
        "then re-run. Not retried: a retry meets the same refusal."
    )


@pytest.mark.slow
def test_pgx_materialize_says_why_under_what_failed(raw, tmp_path):
    lake, code = sysfs_lake()
    home = write_instance(tmp_path / "dagster_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGX_")}
    env |= {"DAGSTER_HOME": str(home), "PGX_RAW_ROOT": str(raw), "PGX_LAKE_ROOT": str(lake)}
    done = subprocess.run([str(BIN / "pgx"), "materialize"], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=600)  # fmt: skip
    console = done.stdout + done.stderr
    assert done.returncode != 0
    why = console.split("What failed, and why:\n", 1)[1].splitlines()
    assert why[0].startswith("  person_index [all]: "), console[-3000:]
    assert_names(why[0].removeprefix("  person_index [all]: "), lake, code)
    assert "Exceeded max_retries" not in console


# ---- the rule, on real errors ----------------------------------------------------------------------------------
def test_duckdb_writing_to_a_full_device_is_named_as_a_full_disk(tmp_path):
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "full.parquet").symlink_to("/dev/full")
    roots = step_folders(LakeResource(lake_root=str(lake)), DuckDBWorker())
    with DuckDBWorker().session() as s, pytest.raises(OSFault) as raised, os_faults(roots):
        s.execute(f"COPY (SELECT range AS x FROM range(100000)) TO '{lake}/full.parquet' (FORMAT parquet)")
    assert not raised.value.allow_retries
    assert raised.value.description.startswith(
        f"The lake folder {lake} (PGX_LAKE_ROOT, at {lake}/full.parquet) is full (No space left on device): free "
        "space on its disk, or point PGX_LAKE_ROOT at a disk with room, then re-run."
    )
    assert isinstance(raised.value.__cause__, duckdb.IOException)  # the engine's own error stays in the event log


def test_python_writing_to_a_full_device_is_named_as_a_full_disk(tmp_path):
    temp = tmp_path / "temp"
    temp.mkdir()
    roots = step_folders(LakeResource(lake_root=str(tmp_path / "lake")), DuckDBWorker(temp_root=str(temp)))
    with pytest.raises(OSFault) as raised, os_faults(roots), open("/dev/full", "wb") as f:
        f.write(b"x" * 100_000)
        f.flush()
    # the OS names no file when a flush fails: every folder the step uses is a candidate
    assert raised.value.description.startswith("A file the step writes or reads is full (No space left on device)")


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (errno.EROFS, "is read-only (Read-only file system): mount it read-write, or point PGX_LAKE_ROOT at a "
                      "writable folder"),
        (errno.ENOSPC, "is full (No space left on device): free space on its disk, or point PGX_LAKE_ROOT at a disk"),
        (errno.EDQUOT, "is over its disk quota (Disk quota exceeded): free space or raise the quota, or point "
                       "PGX_LAKE_ROOT at a folder with room"),
        (errno.EACCES, f"refuses this user (Permission denied, uid {os.getuid()}): give the user the runs run as "
                       "access to it, or point PGX_LAKE_ROOT at a folder it may use"),
        (errno.EPERM, f"refuses this user (Operation not permitted, uid {os.getuid()}): give the user"),
    ],
)  # fmt: skip
def test_each_refusal_by_errno_in_words(code, says):
    # EDQUOT and EACCES cannot be met for real here (no quotas; root passes every mode): the rule on the errno
    roots = [("lake folder", "PGX_LAKE_ROOT", "/data/lake"), ("temp folder", "PGX_TEMP_DIR", "/tmp")]
    fault = os_fault(OSError(code, os.strerror(code), "/data/lake/silver/x.parquet"), roots)
    assert fault is not None and not fault.allow_retries
    assert fault.description.startswith(f"The lake folder /data/lake (PGX_LAKE_ROOT, at /data/lake/silver/x.parquet) "
                                        f"{says}")  # fmt: skip


def test_the_innermost_folder_is_named_and_a_folder_of_no_setting_says_only_what_refused():
    roots = [("temp folder", "PGX_TEMP_DIR", "/tmp"), ("lake folder", "PGX_LAKE_ROOT", "/tmp/run/lake")]
    inner = os_fault(OSError(errno.ENOSPC, "No space left on device", "/tmp/run/lake/events"), roots)
    assert inner is not None and inner.description.startswith("The lake folder /tmp/run/lake (PGX_LAKE_ROOT, at")
    # making the lake's folders failed above the lake: it is still the lake that cannot be written
    above = os_fault(OSError(errno.EROFS, "Read-only file system", "/tmp/run"), roots)
    assert above is not None and above.description.startswith("The lake folder /tmp/run/lake (PGX_LAKE_ROOT, at")
    elsewhere = os_fault(OSError(errno.EROFS, "Read-only file system", "/srv/x"), roots)
    assert elsewhere is not None
    assert elsewhere.description.startswith("The folder of /srv/x is read-only (Read-only file system): mount it "
                                            "read-write, then re-run.")  # fmt: skip


def test_other_errors_keep_their_treatment():
    with DuckDBWorker().session() as s:
        with pytest.raises(Failure) as raised:  # a value that reads like a refusal is still a data defect
            s.execute("SELECT CAST('403 Permission denied' AS INTEGER)")
    assert os_fault(raised.value) is None and type(raised.value).__name__ == "DataDefect"
    assert os_fault(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")) is None
    assert os_fault(OSError(errno.ECONNRESET, "Connection reset by peer")) is None  # transient: retried


# ---- S3 --------------------------------------------------------------------------------------------------------
class Refuse(BaseHTTPRequestHandler):
    """An S3 endpoint that refuses every request as S3 does for credentials without the permission."""

    def refuse(self) -> None:
        body = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = refuse

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def refusing_s3(monkeypatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    for name, value in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "pgx-test", "AWS_SECRET_ACCESS_KEY": "pgx-test",
                        "AWS_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    yield url
    server.shutdown()


def test_s3_refusing_duckdb_is_not_retried_and_says_what_to_grant(refusing_s3):
    roots = step_folders(LakeResource(lake_root="s3://bucket/lake"), DuckDBWorker())
    for statement in ("SELECT * FROM read_parquet('s3://bucket/lake/x.parquet')",
                      "COPY (SELECT 1 AS a) TO 's3://bucket/lake/y.parquet' (FORMAT parquet)"):  # fmt: skip
        with DuckDBWorker(s3=True).session() as s, pytest.raises(OSFault) as raised, os_faults(roots):
            s.execute(statement)
        assert not raised.value.allow_retries
        assert "S3 refused access to " in raised.value.description
        assert "(HTTP 403, AccessDenied): the credentials the runs use" in raised.value.description
        assert "s3:GetObject" in raised.value.description


def test_s3_that_does_not_answer_is_still_retried(monkeypatch):
    with ThreadingHTTPServer(("127.0.0.1", 0), Refuse) as closed:
        port = closed.server_port  # bound, then closed: nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "pgx-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "pgx-test")
    with DuckDBWorker(s3=True).session() as s, pytest.raises(Failure) as raised:
        s.execute("SELECT * FROM read_parquet('s3://bucket/lake/x.parquet')")
    assert raised.value.allow_retries and os_fault(raised.value) is None

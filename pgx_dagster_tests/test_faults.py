"""Fault injection (slow; `make test-slow`): kill -9 of run processes and of `pgx materialize` itself at
random moments, and the S3 server going silent mid-backfill. After each: no partial partition, nothing
left running, and a re-run converges on exactly the content of an undisturbed run."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from pgx_dagster.datasets import STAGED
from pgx_dagster.lake import LakeResource, s3_client
from pgx_dagster.ops.synth import generate
from pgx_dagster.partitions import all_keys, shard_count
from pgx_dagster.reporting import CHECKPOINT
from pgx_dagster.settings import event_years
from pgx_dagster_tests.helpers import instance_events, lake_fingerprint
from pgx_dagster_tests.services import ARTIFACTS, REPO, moto_s3

pytestmark = pytest.mark.slow

PERSONS = 600
TRIALS = 5
PGX = str(Path(sys.executable).parent / "pgx")
ORPHAN_GRACE_SECONDS = 10  # "within a few seconds": the watchdogs poll every 0.5 s


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fault_raw")
    generate(PERSONS, event_years(), 15, out)
    return out


def home_for(base: Path) -> Path:
    """An instance whose run monitor looks every 2 s (30 s in dagster.yaml), so a dead run is noticed soon."""
    home = base / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    config = (REPO / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text(config.replace("poll_interval_seconds: 30", "poll_interval_seconds: 2"))
    return home


def start(home: Path, raw: str, lake: str, log: Path, env: dict | None = None) -> subprocess.Popen:
    environ = {**os.environ, "DAGSTER_HOME": str(home), "PGX_RAW_ROOT": raw, "PGX_LAKE_ROOT": lake,
               "PGX_TEMP_DIR": str(home.parent / "tmp"), **(env or {})}  # fmt: skip
    (home.parent / "tmp").mkdir(exist_ok=True)
    return subprocess.Popen([PGX, "materialize"], env=environ, cwd=REPO, stdout=log.open("a"),
                            stderr=subprocess.STDOUT)  # fmt: skip


def materialize(home: Path, raw: str, lake: str, log: Path, env: dict | None = None) -> tuple[int, str]:
    offset = log.stat().st_size if log.exists() else 0
    proc = start(home, raw, lake, log, env)
    proc.wait(timeout=900)
    return proc.returncode, log.read_text()[offset:]


def processes_of(home: Path) -> list[str]:
    """Every process started for the instance at `home` (DAGSTER_HOME in its environment)."""
    marker = f"DAGSTER_HOME={home}\0".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.name) != os.getpid() and marker in (proc / "environ").read_bytes():
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append(f"{proc.name}: {command[:160]}")
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return found


def assert_nothing_left_running(home: Path) -> None:
    deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
    while processes_of(home) and time.monotonic() < deadline:
        time.sleep(0.25)
    left = processes_of(home)
    for line in left:  # never leak into the next trial, whatever the verdict
        os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
    assert left == []


def lake_state(lake: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(lake).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in lake.rglob("*")}


def assert_no_partial_partition(lake: Path) -> None:
    """Every visible file and folder was published whole. Each file reads to its end (a half-written one
    would not). A dataset with checkpoints has one in every partition folder (written inside the staging
    folder, before the rename); intake's staged datasets are swapped in whole per shard, a file in every partition.
    Staging and trash folders are hidden (a leading dot)."""
    lake_resource = LakeResource(lake_root=str(lake))
    staged = {Path(d.root(lake_resource)) for d in STAGED.values()}
    for root in (Path(d.shard(n).root(lake_resource)) for d in STAGED.values() for n in range(shard_count())):
        if root.exists():
            assert len(list(root.glob("age_band=*/event_year=*"))) == len(all_keys()), root
    files = [p for p in lake.rglob("*.parquet") if not any(part.startswith(".") for part in p.relative_to(lake).parts)]
    con = duckdb.connect()
    for path in files:
        con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()
    datasets: dict[Path, set[Path]] = {}
    for folder in {p.parent for p in files}:
        if "age_band=" in str(folder) and not staged & {*folder.parents}:
            datasets.setdefault(folder.parent.parent, set()).add(folder)
    for root, folders in datasets.items():
        with_checkpoint = {f for f in folders if (f / CHECKPOINT).exists()}
        assert with_checkpoint in (set(), folders), (root, folders - with_checkpoint)


def assert_clean_after_rerun(lake: Path, home: Path) -> None:
    assert not [p for p in lake.rglob(".*") if ".staging-" in p.name or ".old-" in p.name]
    assert not list((home.parent / "tmp").glob("pgx_duckdb_*"))  # temp folders of killed processes removed


STARTED_PROCESS = re.compile(r"Started process for run \(pid: (\d+)\)")  # Dagster's engine event, every launcher


def running_workers(home: Path) -> list[tuple[str, int]]:
    """(run id, the run's process id) of every run executing now, as the run's own engine event names it."""
    workers = []
    with DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED])):
            for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
                if found := STARTED_PROCESS.search(entry.message or ""):
                    workers.append((run.run_id, int(found.group(1))))
    return workers


def engine_messages(home: Path, run_id: str) -> str:
    with DagsterInstance.from_config(str(home)) as instance:
        entries = instance.all_logs(run_id, of_type={DagsterEventType.RUN_FAILURE, DagsterEventType.ENGINE_EVENT})
    return " ".join(e.message or "" for e in entries)


@pytest.fixture(scope="module")
def reference(raw, tmp_path_factory):
    """An undisturbed run: the content every disturbed one must converge on, and how long it takes."""
    base = tmp_path_factory.mktemp("fault_reference")
    lake, home = base / "lake", home_for(base)
    started = time.monotonic()
    code, out = materialize(home, str(raw), str(lake), base / "pgx.log")
    assert code == 0, out[-3000:]
    return {"fingerprint": lake_fingerprint(str(lake)), "seconds": time.monotonic() - started}


def test_kill_9_of_pgx_materialize_leaves_nothing_running_and_a_rerun_converges(raw, reference, tmp_path):
    rng = random.Random(1)
    lake, home, log = tmp_path / "lake", home_for(tmp_path), tmp_path / "pgx.log"
    for trial in range(TRIALS):
        fraction = rng.uniform(0.2, 0.8)
        for _attempt in range(3):
            submitted = backfills(home)
            proc = start(home, str(raw), str(lake), log)
            deadline = time.monotonic() + fraction * reference["seconds"]  # a random moment, mid-run
            # ... but never before the backfill is submitted: on a loaded machine the services may take longer
            # to start than the reference run's whole fraction, and the re-run would find no backfill to cancel
            while backfills(home) == submitted and proc.poll() is None:
                time.sleep(0.2)
            time.sleep(max(0.0, deadline - time.monotonic()))
            if proc.poll() is None and backfill_in_progress(home):
                break
            # its backfill ended first: this run was faster than the reference (the suite's first, cold); the
            # same trial again at an earlier moment
            assert proc.wait() == 0, log.read_text()[-3000:]
            fraction /= 2
        assert proc.poll() is None, f"trial {trial}: ended before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert_nothing_left_running(home)  # daemon, webserver, code servers, runs: all gone
        before = lake_state(lake)
        time.sleep(2)
        assert lake_state(lake) == before, f"trial {trial}: written after the parent died"
        assert_no_partial_partition(lake)

        code, out = materialize(home, str(raw), str(lake), log)  # the re-run
        assert code == 0, out[-3000:]
        assert "left in progress by a `pgx materialize` that died: cancelled" in out
        assert_nothing_left_running(home)
        assert_clean_after_rerun(lake, home)
        assert lake_fingerprint(str(lake)) == reference["fingerprint"], f"trial {trial}"


def test_kill_9_of_run_processes_is_reported_retried_and_converges(raw, reference, tmp_path):
    rng = random.Random(2)
    lake, home, log = tmp_path / "lake", home_for(tmp_path), tmp_path / "pgx.log"
    for trial in range(TRIALS):
        delay = rng.uniform(0.1, 0.6) * reference["seconds"]
        killed: tuple[str, int] | None = None
        for _attempt in range(3):
            proc = start(home, str(raw), str(lake), log)
            time.sleep(delay)
            while killed is None and proc.poll() is None:
                if workers := running_workers(home):
                    run_id, pid = rng.choice(workers)
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed = run_id, pid
                    except ProcessLookupError:  # the run ended between the listing and the kill: another one
                        pass
                time.sleep(0.1)
            if killed:
                break
            # the backfill ended first: this run was faster than the reference (the suite's first, cold); the
            # same trial again at an earlier moment
            assert proc.wait() == 0, log.read_text()[-3000:]
            delay /= 2
        assert killed, f"trial {trial}: no run process seen"
        run_id, pid = killed
        proc.wait(timeout=900)
        # the code server that started the run reported its process killed and the run failed; run retries
        # relaunched the run, so the backfill still completes
        message = engine_messages(home, run_id)
        assert f"Run execution process for {run_id} was terminated by signal 9 (SIGKILL)" in message, message[-2000:]
        with DagsterInstance.from_config(str(home)) as instance:
            assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
            assert instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": run_id}))  # its retry
        assert proc.returncode == 0, log.read_text()[-3000:]
        assert_nothing_left_running(home)
        assert_no_partial_partition(lake)
        assert_clean_after_rerun(lake, home)
        assert lake_fingerprint(str(lake)) == reference["fingerprint"], f"trial {trial}"


def test_s3_server_silent_mid_backfill_fails_cleanly_and_a_rerun_converges(raw, reference, tmp_path):
    bucket = "faults"
    env_timeouts = {"PGX_S3_CONNECT_TIMEOUT": "2", "PGX_S3_READ_TIMEOUT": "3", "PGX_S3_ATTEMPTS": "1"}
    with moto_s3(ARTIFACTS / "logs" / "faults", adopt=True) as aws:
        s3_client().create_bucket(Bucket=bucket)
        for f in raw.rglob("*.parquet"):
            s3_client().upload_file(str(f), bucket, f"raw/{f.relative_to(raw).as_posix()}")
        moto = moto_pid(aws["AWS_ENDPOINT_URL"])
        home, log = home_for(tmp_path), tmp_path / "pgx.log"
        env = {**aws, **env_timeouts}
        proc = start(home, f"s3://{bucket}/raw", f"s3://{bucket}/lake", log, env)
        while materializations(home) < 40 and proc.poll() is None:  # intake, silver and more done
            time.sleep(0.5)
        assert proc.poll() is None, log.read_text()[-3000:]
        os.kill(moto, signal.SIGSTOP)  # accepts connections, never answers
        try:
            proc.wait(timeout=900)
        finally:
            os.kill(moto, signal.SIGCONT)
        out = log.read_text()
        assert proc.returncode == 1, out[-3000:]
        assert "What failed, and why:" in out and aws["AWS_ENDPOINT_URL"] in out
        assert "Traceback" not in out and 'File "' not in out
        assert_nothing_left_running(home)

        code, again = materialize(home, f"s3://{bucket}/raw", f"s3://{bucket}/lake", log, env)
        assert code == 0, again[-3000:]
        assert lake_fingerprint(f"s3://{bucket}/lake") == reference["fingerprint"]


def moto_pid(url: str) -> int:
    port = url.rsplit(":", 1)[1]
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"moto_server" in part for part in cmdline) and port.encode() in cmdline:  # the -m module
            return int(proc.name)
    raise AssertionError(f"no moto_server on port {port}")


def backfills(home: Path) -> int:
    """Backfills the instance at `home` has recorded, whatever their status."""
    with DagsterInstance.from_config(str(home)) as instance:
        return len(instance.get_backfills())


def backfill_in_progress(home: Path) -> bool:
    """The instance's latest backfill is still running (requested, not completed, failed or canceled)."""
    with DagsterInstance.from_config(str(home)) as instance:
        latest = instance.get_backfills(limit=1)
        return bool(latest) and latest[0].status.value == "REQUESTED"


def materializations(home: Path) -> int:
    return len(instance_events(home, DagsterEventType.ASSET_MATERIALIZATION))

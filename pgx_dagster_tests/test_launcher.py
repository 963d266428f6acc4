"""The local run launcher (pgx_dagster/ops/launcher.py): a run executes in a process forked from the
warm forkserver, can be terminated by its process id as users do from the UI, and is reported failed when its
process dies first. Where Dagster has moved the one private name it needs, it launches as Dagster's
DefaultRunLauncher does, through a stock daemon (test_a_moved_run_body_launches_as_dagsters_default_launcher).
The daemon path (queue -> launcher -> run) is also exercised by test_backfill_ui and test_benchmark."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from dagster import (
    Config,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
    in_process_executor,
    job,
    multiprocess_executor,
    op,
    reconstructable,
)

from pgx_dagster.ops import dagster_private
from pgx_dagster.ops.launcher import WORKER_TAG, PreloadedRunLauncher
from pgx_dagster.ops.services import prepare_storage, spawn, stop


class MarkerConfig(Config):
    # Run config, not the environment: run processes inherit the forkserver's environment.
    marker: str
    wait_s: float = 0


@op
def write_marker_then_wait(config: MarkerConfig) -> None:
    Path(config.marker).write_text(str(os.getpid()))
    # whether the run found our code location imported by another process: the forkserver it forked from
    warm = sys.modules.get("pgx_dagster.ops.warm_code")
    Path(f"{config.marker}.warm").write_text(str(warm is not None and warm.LOADED_IN != os.getpid()))
    # and whether it found the launcher, whose function it runs, imported there too
    launcher = sys.modules["pgx_dagster.ops.launcher"]
    Path(f"{config.marker}.launcher").write_text(str(launcher.IMPORTED_IN != os.getpid()))
    deadline = time.monotonic() + config.wait_s
    while time.monotonic() < deadline:
        time.sleep(0.1)


@job(executor_def=in_process_executor)  # the op runs in the run process itself
def marker_job():
    write_marker_then_wait()


# PGX_EXECUTOR=multiprocess inside a forked run: steps from a forkserver the run process starts.
@job(executor_def=multiprocess_executor.configured({"start_method": {"forkserver": {}}}))
def marker_job_step_processes():
    write_marker_then_wait()


def _instance(tmp_path: Path) -> DagsterInstance:
    (tmp_path / "home").mkdir()
    return DagsterInstance.local_temp(
        str(tmp_path / "home"),
        overrides={"run_launcher": {"module": "pgx_dagster.ops.launcher", "class": "PreloadedRunLauncher"}},
    )


def _create(instance: DagsterInstance, marker: Path, wait_s: float, job_def=marker_job):
    return instance.create_run_for_job(
        job_def=job_def,
        job_code_origin=reconstructable(job_def).get_python_origin(),
        status=DagsterRunStatus.STARTING,
        run_config={"ops": {"write_marker_then_wait": {"config": {"marker": str(marker), "wait_s": wait_s}}}},
    )


def _context(run) -> SimpleNamespace:
    """What a run launcher is given (Dagster's LaunchRunContext is private): the run, and no workspace."""
    return SimpleNamespace(dagster_run=run, workspace=None)


def _launch(instance: DagsterInstance, marker: Path, wait_s: float, job_def=marker_job):
    run = _create(instance, marker, wait_s, job_def)
    instance.run_launcher.launch_run(_context(run))
    return run


def _wait_for(instance: DagsterInstance, run_id: str, statuses: set[DagsterRunStatus], timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run.status in statuses:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} is {instance.get_run_by_id(run_id).status}, not in {statuses}")


@pytest.fixture
def instance(tmp_path):
    with _instance(tmp_path) as inst:
        assert isinstance(inst.run_launcher, PreloadedRunLauncher)
        yield inst


def test_entry_point_exists():
    assert callable(dagster_private.execute_run_command_body())


def test_run_executes_in_a_forked_process(instance, tmp_path):
    run = _launch(instance, tmp_path / "marker", 0)
    finished = _wait_for(instance, run.run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE})
    assert finished.status == DagsterRunStatus.SUCCESS
    worker_pid = int((tmp_path / "marker").read_text())
    assert worker_pid != os.getpid()
    assert finished.tags[WORKER_TAG].endswith(f":{worker_pid}")
    assert not instance.run_launcher.supports_check_run_worker_health  # Dagster's: the launcher reports a lost run


WARM_RUN = """
import sys
from pathlib import Path

from dagster import DagsterRunStatus

from pgx_dagster_tests.test_launcher import _instance, _launch, _wait_for

tmp = Path(sys.argv[1])
with _instance(tmp) as instance:
    run = _launch(instance, tmp / "marker", 0)
    print(_wait_for(instance, run.run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}).status.value)
"""


@pytest.mark.slow  # a daemon and a launched run (11 s): `make test-slow`
def test_a_run_finds_the_code_location_warm(tmp_path):
    """In a fresh interpreter, as in `pgx daemon`: a process has one forkserver, and the first to start it
    chooses what it imports (here the launcher; in this test session another test may have come first)."""
    out = subprocess.run([sys.executable, "-c", WARM_RUN, str(tmp_path)], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent, timeout=180)  # fmt: skip
    assert out.stdout.strip().splitlines()[-1:] == ["SUCCESS"], out.stderr[-2000:]
    assert (tmp_path / "marker.warm").read_text() == "True"
    assert (tmp_path / "marker.launcher").read_text() == "True"


WARM_CODE_CHANGED = """
import sys
from pgx_dagster.ops import warm_code

assert warm_code.LOADED_FROM is not None
warm = sys.modules["pgx_dagster.definitions"]
assert warm_code.use_or_forget() is True and sys.modules["pgx_dagster.definitions"] is warm
path, _, _ = warm_code.LOADED_FROM[0]
warm_code.LOADED_FROM = ((path, 0, 0), *warm_code.LOADED_FROM[1:])  # that file changed since it was imported
assert warm_code.use_or_forget() is False
assert [m for m in sys.modules if m.startswith("pgx_dagster")] == ["pgx_dagster.ops.warm_code"]
import pgx_dagster.definitions
assert sys.modules["pgx_dagster.definitions"] is not warm
print("imported afresh")
"""


def test_a_changed_file_makes_the_run_import_the_code_afresh(tmp_path, monkeypatch):
    """A run keeps the forkserver's modules only while none of their files changed (an edit reaches the next
    run); here in a fresh interpreter, as the forkserver is."""
    out = subprocess.run([sys.executable, "-c", WARM_CODE_CHANGED], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "imported afresh", out.stderr[-2000:]
    # what tells a change: a watched file's time or size, or a PGX_ setting (the import reads some)
    from pgx_dagster.ops import warm_code

    (tmp_path / "stage.py").write_text("A = 1\n")
    monkeypatch.setattr(warm_code, "_WATCHED", ((tmp_path, "**/*.py"),))
    before = warm_code.fingerprint()
    assert before == warm_code.fingerprint()
    (tmp_path / "stage.py").write_text("A = 22\n")
    assert warm_code.fingerprint() != before
    before = warm_code.fingerprint()
    monkeypatch.setenv("PGX_MAX_YEAR", "2017")
    assert warm_code.fingerprint() != before


def test_run_retries_decide_once_the_run_is_marked_failed(instance, tmp_path):
    """Dagster stores a run's failure event before it marks the run failed; its retry consumer, reading in
    between, skipped the run for good (a backfill then waited forever). pgx daemon's consumer waits for the run."""
    run = _create(instance, tmp_path / "marker", 0)
    seen_before = [r.dagster_run.status for r in instance.get_run_records(RunsFilter(run_ids=[run.run_id]))]
    decided: list[DagsterRunStatus] = []
    handle = dagster_private.once_finished(
        lambda _c, records, _l: decided.extend(r.dagster_run.status for r in records), 10
    )
    threading.Timer(0.3, lambda: instance.report_run_failed(instance.get_run_by_id(run.run_id))).start()
    handle(SimpleNamespace(instance=instance), instance.get_run_records(RunsFilter(run_ids=[run.run_id])), None)
    assert seen_before == [DagsterRunStatus.STARTING] and decided == [DagsterRunStatus.FAILURE]
    # what pgx daemon installs: Dagster's retry handler, behind the wait
    try:
        assert dagster_private.settle_run_retries(5.0) is True
        handlers = dagster_private.run_retry_handlers()
        assert [h.__qualname__ for h in handlers] == ["once_finished.<locals>.handle_finished"]
        assert [h.__name__ for h in handlers] == ["consume_new_runs_for_automatic_reexecution"]
    finally:
        dagster_private.settle_run_retries(None)
    assert [h.__qualname__ for h in dagster_private.run_retry_handlers()] == [
        "consume_new_runs_for_automatic_reexecution"
    ]


@pytest.mark.slow  # a stress test of 16 concurrent launches (33 s): `make test-slow`
def test_runs_launched_from_several_threads_at_once(instance, tmp_path):
    """The run queue launches with `dequeue_use_threads`: concurrent launches must all start. (The
    daemon once lost a run to a shared dict mutated across threads; this test exercises concurrent
    launches but did not reproduce that race reliably.)"""
    n = 16
    runs = [_create(instance, tmp_path / f"marker_{i}", 0) for i in range(n)]
    barrier = threading.Barrier(n)

    def launch(run):
        barrier.wait()
        instance.run_launcher.launch_run(_context(run))

    with ThreadPoolExecutor(max_workers=n) as pool:
        list(pool.map(launch, runs))
    ended = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}
    assert [_wait_for(instance, r.run_id, ended).status for r in runs] == [DagsterRunStatus.SUCCESS] * n
    assert len({(tmp_path / f"marker_{i}").read_text() for i in range(n)}) == n  # a process each


def test_step_processes_inside_a_forked_run(instance, tmp_path):
    run = _launch(instance, tmp_path / "marker", 0, job_def=marker_job_step_processes)
    finished = _wait_for(instance, run.run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE})
    assert finished.status == DagsterRunStatus.SUCCESS
    step_pid = int((tmp_path / "marker").read_text())
    assert not finished.tags[WORKER_TAG].endswith(f":{step_pid}")  # the step ran in its own process


def test_terminate_cancels_the_run(instance, tmp_path):
    run = _launch(instance, tmp_path / "marker", 120)
    started = _wait_for(instance, run.run_id, {DagsterRunStatus.STARTED})
    deadline = time.monotonic() + 30
    while not (tmp_path / "marker").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started.status == DagsterRunStatus.STARTED
    assert instance.run_launcher.terminate(run.run_id) is True
    canceled = _wait_for(instance, run.run_id, {DagsterRunStatus.CANCELED, DagsterRunStatus.FAILURE}, timeout=60)
    assert canceled.status == DagsterRunStatus.CANCELED
    assert instance.run_launcher.terminate(run.run_id) is False  # already finished


def test_a_killed_run_process_is_reported_failed(instance, tmp_path):
    run = _launch(instance, tmp_path / "marker", 120)
    deadline = time.monotonic() + 60
    while not (tmp_path / "marker").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int((tmp_path / "marker").read_text())
    os.kill(pid, signal.SIGKILL)
    # the launcher reports it as soon as the process is gone, with what to do: run retries start it again
    failed = _wait_for(instance, run.run_id, {DagsterRunStatus.FAILURE, DagsterRunStatus.SUCCESS})
    assert failed.status == DagsterRunStatus.FAILURE
    messages = [e.message for e in instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)]
    assert len(messages) == 1 and f"the run's process ({pid}) died before the run finished" in messages[0]
    assert "every partition of the run" in messages[0] and "re-execute the run from the UI" in messages[0]


# Dagster as after an upgrade that moved the private names: imported by every process on this PYTHONPATH.
MOVED_NAMES = """
from pgx_dagster.ops import dagster_private
for what, (module, name) in list(dagster_private.PRIVATE.items()):
    dagster_private.PRIVATE[what] = (module, name + "_moved")
"""
FALLBACK_INSTANCE = """
telemetry: {enabled: false}
run_launcher: {module: pgx_dagster.ops.launcher, class: PreloadedRunLauncher}
run_queue: {dequeue_interval_seconds: 1}
"""


@pytest.mark.slow  # a daemon and a launched run (12 s): `make test-slow`
def test_a_moved_run_body_launches_as_dagsters_default_launcher(tmp_path, monkeypatch):
    """The launcher's fallback: with the private name gone, a stock `dagster-daemon run` launches the queued run
    through Dagster's own path (the code server spawns it), the run succeeds, and the daemon warned once."""
    home, patch = tmp_path / "home", tmp_path / "moved"
    home.mkdir(), patch.mkdir()
    (home / "dagster.yaml").write_text(FALLBACK_INSTANCE)
    (patch / "sitecustomize.py").write_text(MOVED_NAMES)
    repo = Path(__file__).resolve().parent.parent
    (tmp_path / "workspace.yaml").write_text(
        f"load_from:\n  - python_file:\n      relative_path: {Path(__file__).resolve()}\n"
        f"      attribute: marker_job\n      location_name: launcher_test\n      working_directory: {repo}\n"
    )
    marker = tmp_path / "marker"
    (tmp_path / "run.yaml").write_text(f"ops: {{write_marker_then_wait: {{config: {{marker: '{marker}'}}}}}}\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(patch), str(repo)])}
    scripts, workspace = Path(sys.executable).parent, str(tmp_path / "workspace.yaml")
    prepare_storage(home)  # once, before the daemon and the launch race to create it
    with open(tmp_path / "daemon.log", "w") as log:  # Dagster's own daemon, from its console script
        daemon = spawn([str(scripts / "dagster-daemon"), "run", "-w", workspace], env=env, stdout=log,
                       stderr=subprocess.STDOUT, cwd=tmp_path)  # fmt: skip
    try:
        launched = subprocess.run(
            [str(scripts / "dagster"), "job", "launch", "-w", workspace, "-j", "marker_job",
             "-c", str(tmp_path / "run.yaml")],
            env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path,
        )  # fmt: skip
        assert launched.returncode == 0, launched.stderr[-3000:]
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        with DagsterInstance.get() as instance:
            (run,) = instance.get_runs()
            finished = _wait_for(instance, run.run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}, 180)
    finally:
        stop(daemon)
    log = (tmp_path / "daemon.log").read_text()
    assert finished.status == DagsterRunStatus.SUCCESS, log[-3000:]
    # Dagster's own launch: the code server that ran it is tagged, no forked process is
    assert WORKER_TAG not in finished.tags and any(t.endswith("dagster/grpc_info") for t in finished.tags)
    assert int(marker.read_text()) != daemon.pid
    assert log.count("_execute_run_command_body_moved is gone in Dagster") == 1, log[-3000:]


IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
LEADER = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {IGNORES_SIGTERM!r}]); time.sleep(600)"


@contextmanager
def _sigterm(inherited: str) -> Iterator[None]:
    """This process with SIGTERM as a child would inherit it: ignored, blocked in this thread, or default."""
    if inherited == "ignored":
        before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, before)
    elif inherited == "blocked":
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    else:
        yield


@pytest.mark.parametrize("inherited", ["default", "ignored", "blocked"])
def test_stopping_a_service_leaves_nothing_of_its_process_group(inherited):
    """A child that ignores SIGTERM (as a code server waits out its heartbeat) is killed with its group,
    so the service's watchdog exits at once instead of timing out the teardown of a finished backfill -
    also when the starting process ignores or blocks SIGTERM (a child inherits both: stop() took 26 s)."""
    import sys

    from pgx_dagster.ops.reaper import group_alive
    from pgx_dagster.ops.services import reap_on_death

    with _sigterm(inherited):
        leader = spawn([sys.executable, "-c", LEADER])
        reaper = reap_on_death(leader)
    time.sleep(1.5)  # the child is started
    started = time.monotonic()
    stop(leader, grace=1.0)
    assert not group_alive(leader.pid) and time.monotonic() - started < 10
    assert reaper.wait(timeout=5) is not None

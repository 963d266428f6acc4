"""`pgx daemon` (pgx_dagster/ops/daemon.py): Dagster's `dagster-daemon run` from its console script, with a shorter
loop and run retries decided once the failed run's status is stored; where Dagster has moved either private name,
one warning and Dagster's own behaviour. Run retries at work: test_faults.py; the daemon at work:
test_backfill_ui.py."""

import importlib
import threading
import warnings
from types import SimpleNamespace

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter, job, op

from pgx_dagster.ops import daemon, dagster_private

DAGSTERS_RETRY_HANDLERS = ["consume_new_runs_for_automatic_reexecution"]


def _dagsters(what: str):
    """The value Dagster's module holds now, read without the resolver (which a test may have moved)."""
    module, name = dagster_private.PRIVATE[what]
    return getattr(importlib.import_module(module), name)


@pytest.fixture
def restored():
    """Dagster's daemon controller as it was, whatever the test changed in it."""
    interval = dagster_private.daemon_interval()
    yield
    dagster_private.set_daemon_interval(interval)
    dagster_private.settle_run_retries(None)


def test_pgx_daemon_shortens_the_loop_and_settles_run_retries(restored):
    assert dagster_private.daemon_interval() == 30  # Dagster's, before
    assert daemon.accelerate(2.5) == {"daemon_interval": True, "retry_consumer": True}
    assert dagster_private.daemon_interval() == 2.5
    assert [h.__name__ for h in dagster_private.run_retry_handlers()] == DAGSTERS_RETRY_HANDLERS
    assert [h.__qualname__ for h in dagster_private.run_retry_handlers()] == ["once_finished.<locals>.handle_finished"]
    daemon.accelerate(2.5)  # twice: Dagster's consumer wrapped once, never ours
    assert _dagsters("retry_consumer").dagsters_own.__name__ == "EventLogConsumerDaemon"
    assert not hasattr(_dagsters("retry_consumer").dagsters_own, "dagsters_own")


def test_moved_names_fall_back_to_dagsters_daemon_with_one_warning_each(restored, monkeypatch):
    for what in ("daemon_interval", "retry_consumer"):
        module, name = dagster_private.PRIVATE[what]
        monkeypatch.setitem(dagster_private.PRIVATE, what, (module, f"{name}_moved"))
    monkeypatch.setattr(dagster_private, "_warned", set())
    with pytest.warns(UserWarning) as caught:
        assert daemon.accelerate(0.5) == {"daemon_interval": False, "retry_consumer": False}
    assert [str(w.message).split(" is gone")[0] for w in caught] == [
        "dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS_moved",
        "dagster._daemon.controller.EventLogConsumerDaemon_moved",
    ]
    assert "loop every 30 s" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        assert daemon.accelerate(0.5) == {"daemon_interval": False, "retry_consumer": False}
    monkeypatch.undo()
    assert dagster_private.daemon_interval() == 30  # the loop stays Dagster's
    assert [h.__qualname__ for h in dagster_private.run_retry_handlers()] == DAGSTERS_RETRY_HANDLERS  # not settled


def test_a_loop_constant_that_is_no_longer_a_number_falls_back(restored, monkeypatch):
    module, name = dagster_private.PRIVATE["daemon_interval"]
    monkeypatch.setattr(importlib.import_module(module), name, "30")
    monkeypatch.setattr(dagster_private, "_warned", set())
    with pytest.warns(UserWarning, match="no longer a number"):
        assert dagster_private.set_daemon_interval(0.5) is False
    assert _dagsters("daemon_interval") == "30"


def test_pgx_daemon_runs_dagsters_console_script_with_its_options(restored, tmp_path, monkeypatch, capsys):
    """`pgx daemon --help` is `dagster-daemon run --help`: the options pass through to Dagster's own command."""
    (tmp_path / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as exited:
        daemon.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "dagster-daemon run [OPTIONS]" in out and "Run any daemons configured on the DagsterInstance" in out
    assert not daemon.pid_file(tmp_path).exists()  # removed as the daemon ends


@op
def nothing() -> None:
    pass


@job
def one_op_job():
    nothing()


def test_run_retries_decide_once_the_run_is_marked_failed(tmp_path):
    """Dagster stores a run's failure event before it marks the run failed; its retry consumer, reading in
    between, skipped the run for good (a backfill then waited forever). pgx daemon's consumer waits for the run."""
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        run = instance.create_run_for_job(job_def=one_op_job, status=DagsterRunStatus.STARTING)
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
        assert [h.__name__ for h in handlers] == DAGSTERS_RETRY_HANDLERS
    finally:
        dagster_private.settle_run_retries(None)
    assert [h.__qualname__ for h in dagster_private.run_retry_handlers()] == DAGSTERS_RETRY_HANDLERS

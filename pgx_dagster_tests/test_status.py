"""`pgx status`'s QA verdict per partition, on the code location's own asset graph: which partitions failed QA
and what was built on them; and which runs fail a backfill for `pgx backfill`. The whole commands on real
backfills: test_end_to_end.py (all passed), test_bad_inputs.py (a guard failing on some partitions) and
test_backfill_ui.py (a failed check, every partition materialized)."""

from types import SimpleNamespace

from pgx_dagster.definitions import defs
from pgx_dagster.ops.status import Verdict, _downstream, _ended, _qa_failures
from pgx_dagster.partitions import all_keys, cohort_names

GRAPH = defs.resolve_asset_graph()
INTAKE_CHECKS = [
    "claims_intake_expected_columns",
    "claims_intake_quarantine_rate",
    "claims_intake_required_columns",
    "intake_reconciles",
]


def intake(at: float = 10.0, run: str = "r1") -> dict:
    return {("claims_intake", ""): {"at": at, "run_id": run}}


def planned(*runs: str) -> dict:
    """Each run was to evaluate every intake check (the planned events the backfill's runs log)."""
    return {(run, "claims_intake"): set(INTAKE_CHECKS) for run in runs}


def verdicts(at: float = 11.0, **failed: str) -> dict:
    """Every intake check passed at `at`, except those named: check=severity of their failed verdict."""
    out = {}
    for check in INTAKE_CHECKS:
        out[("claims_intake", check, "")] = Verdict(at, check not in failed, failed.get(check, "ERROR"))
    return out


def test_every_check_passed_on_the_latest_materialization_is_qa_passed():
    assert _qa_failures(intake(), verdicts(), planned("r1"), {"r1"}) == {}


def test_a_failed_error_check_fails_qa_and_a_failed_warn_check_does_not():
    failed = verdicts(claims_intake_required_columns="ERROR", claims_intake_expected_columns="WARN")
    assert _qa_failures(intake(), failed, planned("r1"), {"r1"}) == {
        ("claims_intake", ""): ["claims_intake_required_columns failed"]
    }


def test_a_planned_check_without_a_verdict_on_the_latest_materialization_fails_qa_once_its_run_has_ended():
    missing = verdicts()
    del missing[("claims_intake", "intake_reconciles", "")]
    assert _qa_failures(intake(), missing, planned("r1"), {"r1"}) == {
        ("claims_intake", ""): ["intake_reconciles: no verdict"]
    }
    # the run still going (or waiting on its retry): its verdicts may yet come
    assert _qa_failures(intake(), missing, planned("r1"), set()) == {}
    # verdicts on an earlier materialization say nothing of the latest one
    stale = _qa_failures(intake(at=20.0, run="r2"), verdicts(at=11.0), planned("r1", "r2"), {"r1", "r2"})
    assert stale == {("claims_intake", ""): [f"{c}: no verdict" for c in INTAKE_CHECKS]}
    # a later passing verdict in the backfill (a run retry re-ran the checks) clears an earlier failure
    assert _qa_failures(intake(at=20.0, run="r2"), verdicts(at=30.0), planned("r2"), {"r2"}) == {}


def run(run_id: str, finished: bool = True, **tags: str) -> SimpleNamespace:
    """A run as `_ended` reads it: its id, whether it finished, its tags."""
    names = {"parent": "dagster/parent_run_id", "will_retry": "dagster/will_retry"}
    return SimpleNamespace(run_id=run_id, is_finished=finished, tags={names[k]: v for k, v in tags.items()})


def test_a_run_has_ended_once_finished_and_not_waiting_on_its_retry():
    assert _ended([run("a"), run("b", finished=False)]) == {"a"}
    # died, a retry is due: not ended until the retry has
    assert _ended([run("a", will_retry="true")]) == set()
    assert _ended([run("a", will_retry="true"), run("a2", finished=False, parent="a")]) == set()
    assert _ended([run("a", will_retry="true"), run("a2", parent="a")]) == {"a", "a2"}


def test_what_is_built_on_a_partition_follows_the_graph_and_its_partition_mappings():
    key = "65-74|2019"
    below = _downstream([("silver_medical", key)], GRAPH)
    assert ("silver_medical", key) not in below
    assert ("imputed_medical", key) in below and ("events", key) in below
    # demographics reads every silver partition, so every imputed partition is built on this one
    assert ("member_demographics", "000") in below  # its one shard
    assert {k for name, k in below if name == "imputed_pharmacy"} == set(all_keys())
    # no silver partition is built on another
    assert not any(name.startswith("silver_") for name, _ in below)
    for cohort in cohort_names():
        assert ("cohort_report", cohort) in below
    # an asset the code no longer has (an older backfill may name one) is left out
    assert _downstream([("renamed_asset", "")], GRAPH) == set()
    # intake: every partition of every asset the project materializes, but itself
    built = {
        (node.key.to_user_string(), k) for node in GRAPH.asset_nodes if node.is_materializable for k in _keys(node)
    }
    assert _downstream([("person_index", "")], GRAPH) == built - {("person_index", "")}
    # a claim unit: everything but person_index and the unit itself (silver reads every unit)
    assert _downstream([("claims_intake", "000")], GRAPH) == built - {("person_index", ""), ("claims_intake", "000")}


def _keys(node) -> list[str]:
    if node.partitions_def is None:
        return [""]
    return list(node.partitions_def.get_partition_keys())


class _Runs:
    """The runs of one backfill as `Client.runs` gives them (the GraphQL answer, already parsed). A failed run's
    `will_retry` is what the daemon decided: "false" unless given."""

    def __init__(self, *runs: tuple):
        self._runs = [
            {
                "run_id": r[0],
                "status": r[1],
                "partition": None,
                "assets": [],
                "retry_of": r[2],
                "will_retry": r[3] if len(r) > 3 else ("false" if r[1] in ("FAILURE", "CANCELED") else None),
            }
            for r in runs
        ]
        self.calls = 0

    def runs(self, backfill_id: str) -> list[dict]:
        self.calls += 1
        return self._runs


def test_a_failed_run_that_a_run_retry_redid_is_not_a_failure_of_the_backfill():
    from pgx_dagster.ops.backfill import failed_runs

    # a lost run process retried, and the retry succeeded: nothing failed
    runs = _Runs(("a", "FAILURE", None, "true"), ("a2", "SUCCESS", "a"), ("b", "SUCCESS", None))
    assert failed_runs(runs, "x", poll_s=0) == []
    # retried twice, the last attempt failed too: that last attempt is the failure
    runs = _Runs(
        ("a", "FAILURE", None, "true"), ("a2", "FAILURE", "a", "true"), ("a3", "FAILURE", "a2"), ("c", "CANCELED", None)
    )
    assert [r["run_id"] for r in failed_runs(runs, "x", poll_s=0)] == ["a3", "c"]
    assert runs.calls == 1  # every failure judged by the daemon, no retry running: no waiting


def test_failed_runs_waits_for_the_daemon_to_judge_a_failed_run_and_for_a_retry_it_will_make():
    from pgx_dagster.ops.backfill import failed_runs

    # not yet judged (no tag): waited for up to the grace, then counted as failed
    runs = _Runs(("a", "FAILURE", None, None))
    assert [r["run_id"] for r in failed_runs(runs, "x", grace_s=0.05, poll_s=0.01)] == ["a"]
    assert runs.calls > 1

    # the daemon will retry it, the retry appears on a later poll and succeeds: nothing failed
    class _Later(_Runs):
        def runs(self, backfill_id: str) -> list[dict]:
            self.calls += 1
            if self.calls == 3:
                self._runs.append(
                    {**self._runs[0], "run_id": "a2", "status": "STARTED", "retry_of": "a", "will_retry": None}
                )
            if self.calls == 5:
                self._runs[-1]["status"] = "SUCCESS"
            return self._runs

    later = _Later(("a", "FAILURE", None, "true"))
    assert failed_runs(later, "x", grace_s=0, poll_s=0.01) == []
    assert later.calls == 5


def test_pgx_materialize_fails_on_a_run_that_failed_though_every_verdict_given_passed():
    """A check step that crashes fails its run with no verdict at all: the verdicts alone would pass."""
    from pgx_dagster.ops.materialize import Outcome

    checks = [("claims_intake", "intake_reconciles", "", True)]
    assert Outcome("b", "COMPLETED_SUCCESS", True, 1.0, checks=checks).ok
    failed = Outcome("b", "COMPLETED_SUCCESS", True, 1.0, checks=checks, failures=["  failed run r1: ..."])
    assert not failed.ok

"""`pgx status`'s QA verdict per partition, on the code location's own asset graph: which partitions failed QA
and what was built on them. The whole command on a real backfill: test_end_to_end.py (all passed) and
test_bad_inputs.py (a guard failing on some partitions)."""

from pgx_dagster.definitions import defs
from pgx_dagster.ops.status import Verdict, _downstream, _qa_failures
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


def verdicts(at: float = 11.0, **failed: str) -> dict:
    """Every intake check passed at `at`, except those named: check=severity of their failed verdict."""
    out = {}
    for check in INTAKE_CHECKS:
        out[("claims_intake", check, "")] = Verdict(at, check not in failed, failed.get(check, "ERROR"))
    return out


def test_every_check_passed_on_the_latest_materialization_is_qa_passed():
    assert _qa_failures(intake(), verdicts(), {"r1"}, GRAPH) == {}


def test_a_failed_error_check_fails_qa_and_a_failed_warn_check_does_not():
    failed = verdicts(claims_intake_required_columns="ERROR", claims_intake_expected_columns="WARN")
    assert _qa_failures(intake(), failed, {"r1"}, GRAPH) == {
        ("claims_intake", ""): ["claims_intake_required_columns failed"]
    }


def test_a_check_without_a_verdict_on_the_latest_materialization_fails_qa_once_its_run_has_ended():
    missing = verdicts()
    del missing[("claims_intake", "intake_reconciles", "")]
    assert _qa_failures(intake(), missing, {"r1"}, GRAPH) == {("claims_intake", ""): ["intake_reconciles: no verdict"]}
    # the run still going: its verdicts may yet come
    assert _qa_failures(intake(), missing, set(), GRAPH) == {}
    # verdicts on an earlier materialization say nothing of the latest one
    stale = _qa_failures(intake(at=20.0, run="r2"), verdicts(at=11.0), {"r1", "r2"}, GRAPH)
    assert stale == {("claims_intake", ""): [f"{c}: no verdict" for c in INTAKE_CHECKS]}
    # a later passing verdict (checks re-run after a fix) clears an earlier failure
    later = verdicts(at=30.0)
    assert _qa_failures(intake(at=20.0, run="r2"), later, {"r2"}, GRAPH) == {}


def test_what_is_built_on_a_partition_follows_the_graph_and_its_partition_mappings():
    key = "65-74|2019"
    below = _downstream([("silver_medical", key)], GRAPH)
    assert ("silver_medical", key) not in below
    assert ("imputed_medical", key) in below and ("events", key) in below
    # demographics reads every silver partition, so every imputed partition is built on this one
    assert ("member_demographics", "") in below
    assert {k for name, k in below if name == "imputed_pharmacy"} == set(all_keys())
    # no silver partition is built on another
    assert not any(name.startswith("silver_") for name, _ in below)
    for cohort in cohort_names():
        assert ("cohort_report", cohort) in below
    # intake: every partition of every asset the project materializes, but itself
    built = {
        (node.key.to_user_string(), k) for node in GRAPH.asset_nodes if node.is_materializable for k in _keys(node)
    }
    assert _downstream([("claims_intake", "")], GRAPH) == built - {("claims_intake", "")}


def _keys(node) -> list[str]:
    if node.partitions_def is None:
        return [""]
    return list(node.partitions_def.get_partition_keys())

"""A check evaluation names the materialization it judged (what the Checks tab's partition grid needs), and
falls back to Dagster's own behaviour, with one warning, where Dagster has moved the class it needs."""

import warnings

import pytest
from dagster import AssetCheckEvaluation, AssetKey

from pgx_dagster.ops import dagster_private


def test_the_target_is_dagsters_own_record_of_the_materialization():
    target = dagster_private.check_target(42, "run-1", 1.5)
    evaluation = AssetCheckEvaluation(
        asset_key=AssetKey("events"), check_name="c", passed=True, target_materialization_data=target
    )
    assert (evaluation.target_materialization_data.storage_id, target.run_id, target.timestamp) == (42, "run-1", 1.5)


def test_a_moved_class_falls_back_to_no_target_with_one_warning(monkeypatch):
    def gone(module, name, fallback):
        raise dagster_private.DagsterUpgradeError(f"{module}.{name} is gone: {fallback}")

    monkeypatch.setattr(dagster_private, "_private", gone)
    monkeypatch.setattr(dagster_private, "_target_warned", [])
    with pytest.warns(UserWarning, match="AssetCheckEvaluationTargetMaterializationData is gone"):
        assert dagster_private.check_target(1, "r", 0.0) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time: no warning
        assert dagster_private.check_target(2, "r", 0.0) is None

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
    module, name = dagster_private.PRIVATE["check_target"]
    monkeypatch.setitem(dagster_private.PRIVATE, "check_target", (module, f"{name}Moved"))
    monkeypatch.setattr(dagster_private, "_warned", set())
    with pytest.warns(UserWarning, match="AssetCheckEvaluationTargetMaterializationDataMoved is gone") as caught:
        assert dagster_private.check_target(1, "r", 0.0) is None
    assert len(caught) == 1 and "partition grid shows the verdicts as missing" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time: no warning
        assert dagster_private.check_target(2, "r", 0.0) is None

"""deploy/: the production instance (Postgres storage, ECS run launcher) loads as Dagster loads it - its
schema, its classes built - and the pipeline runs with its instance stored in a real PostgreSQL server. The
UI backfill on this instance, with the stock daemon and webserver: test_production_path.py."""

import shutil

import pytest
import yaml
from dagster import AssetSelection, DagsterInstance, DagsterInvalidConfigError, materialize

from pgx_dagster_tests.services import REPO

DEPLOY = REPO / "deploy"


def instance_at(tmp_path, config: dict) -> DagsterInstance:
    """The instance of `config` as a dagster.yaml, as Dagster's processes load it (public API)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return DagsterInstance.from_config(str(home))


def test_production_instance_loads_with_its_launcher_and_settings(postgres, tmp_path, monkeypatch):
    for key, value in {**postgres, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    with instance_at(tmp_path, raw) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        launcher = instance.run_launcher  # built from its config, validated against its schema
        assert type(launcher).__name__ == "SizedEcsRunLauncher"
        assert launcher.run_resources == {"cpu": "1024", "memory": "3072"}
        assert launcher.configured_env_vars == ["AWS_REGION"]  # PGX_*: from the settings object
        monkeypatch.setenv("PGX_CONFIG_FILE", "config/aws.toml")
        assert "PGX_MEMORY_PER_WORKER=2GB" in launcher.env_vars and "PGX_PARTITIONS_PER_RUN=1" in launcher.env_vars
        queue = instance.run_coordinator.get_run_queue_config()
        assert queue.max_concurrent_runs == 48 and raw["run_queue"]["dequeue_use_threads"] is True
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_runtime_seconds == 3600
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    # and an invalid one is refused: the loading can fail
    broken = {**raw, "run_queue": {"max_concurrent_runs": "many"}}
    with pytest.raises(DagsterInvalidConfigError):
        instance_at(tmp_path, broken)
    launcher = {**raw["run_launcher"], "config": {**raw["run_launcher"]["config"], "run_resources": "big"}}
    with instance_at(tmp_path, {**raw, "run_launcher": launcher}) as instance:
        with pytest.raises(DagsterInvalidConfigError):
            _ = instance.run_launcher


def test_local_instance_config_validates(tmp_path):
    raw = yaml.safe_load((REPO / "dagster.yaml").read_text())
    with instance_at(tmp_path, raw) as instance:  # the schema (the run launcher is built when a run launches)
        assert instance.get_runs(limit=1) == []
    shutil.rmtree(tmp_path / "home")
    with pytest.raises(DagsterInvalidConfigError):
        instance_at(tmp_path, {**raw, "run_queue": {"max_concurrent_runs": "many"}})


@pytest.mark.slow  # the pipeline on a real Postgres (14 s): `make test-slow`
def test_pipeline_with_the_instance_in_postgres(postgres, synthetic_raw, tmp_path, monkeypatch):
    from pgx_dagster.definitions import defs
    from pgx_dagster.resources import build_resources

    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    home = tmp_path / "home"
    home.mkdir()
    # The production storage section as is; runs launched locally instead of on ECS.
    local = {"storage": raw["storage"], "run_queue": raw["run_queue"], "telemetry": raw["telemetry"]}
    (home / "dagster.yaml").write_text(yaml.safe_dump(local))
    for key, value in {**postgres, "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(key, value)
    resources = build_resources(str(synthetic_raw.path), str(tmp_path / "lake"))
    with DagsterInstance.get() as instance:
        results = [
            materialize(
                [*defs.assets, *defs.asset_checks],
                selection=AssetSelection.assets(*assets) | AssetSelection.checks_for_assets(*assets),
                partition_key=partition,
                instance=instance,
                resources=resources,
            )
            for assets, partition in [
                (["person_index"], None),
                (["claims_intake"], "000"),
                (["silver_medical", "silver_pharmacy"], "65-74|2019"),
                (["person_facts"], "000"),
                (["member_demographics"], "000"),
            ]
        ]
        assert all(r.success and all(e.passed for e in r.get_asset_check_evaluations()) for r in results)
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert {r.run_id for r in instance.get_runs()} == {r.run_id for r in results}
        from dagster import AssetKey

        assert instance.get_materialized_partitions(AssetKey("silver_medical")) == {"65-74|2019"}
    import psycopg2

    with (
        psycopg2.connect(
            host="127.0.0.1",
            port=postgres["DAGSTER_PG_PORT"],
            dbname="dagster",
            user="dagster",
            password=postgres["DAGSTER_PG_PASSWORD"],
        ) as con,
        con.cursor() as cur,
    ):
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] == 5

"""deploy/: the production instance (Postgres storage, ECS run launcher) validates against Dagster's
config schemas, and the pipeline runs with its instance stored in a real PostgreSQL server."""

import importlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from dagster import AssetSelection, DagsterInstance, materialize

from pgx_dagster.ops import dagster_private
from pgx_dagster.ops.services import spawn
from pgx_dagster_tests.services import REPO, apt_install, free_port

DEPLOY = REPO / "deploy"
PG_ENV = {
    "DAGSTER_PG_HOST": "127.0.0.1",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-secret",
}


def configurable_class(section: dict):
    return getattr(importlib.import_module(section["module"]), section["class"])


def test_production_instance_config_validates(monkeypatch):
    for key, value in {**PG_ENV, "DAGSTER_PG_PORT": "5432"}.items():
        monkeypatch.setenv(key, value)
    config = dagster_private.resolved_instance_config(str(DEPLOY))  # the instance schema, env vars resolved
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    cls = configurable_class(raw["run_launcher"])
    assert dagster_private.validate_configurable(cls.config_type(), raw["run_launcher"]["config"]) == []
    launcher = raw["run_launcher"]["config"]
    assert launcher["run_resources"] == {"cpu": "1024", "memory": "3072"}
    assert "PGX_MEMORY_PER_WORKER=2GB" in launcher["env_vars"]
    assert config["run_queue"]["dequeue_use_threads"] is True and config["run_queue"]["max_concurrent_runs"] == 48
    assert set(config["storage"]) == {"postgres"}  # validated by the instance schema above
    assert config["run_monitoring"]["max_runtime_seconds"] == 3600


def test_production_workspace_validates(monkeypatch):
    monkeypatch.setenv("PGX_CODE_LOCATION_HOST", "code.internal")
    raw = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    assert dagster_private.validate_workspace_yaml(raw) == []


def test_local_instance_config_validates():
    raw = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert dagster_private.validate_instance_yaml(raw) == []
    # and an invalid one is refused: the validation can fail
    assert dagster_private.validate_instance_yaml({**raw, "run_queue": {"max_concurrent_runs": "many"}}) != []


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        apt_install("postgresql")
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent


def _as_postgres(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + cmd, check=True, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on loopback, stopped by its process id."""
    bindir = _pg_bin()
    # pytest's temp folders are private to root; the server runs as the postgres user.
    base = Path(tempfile.mkdtemp(prefix="pgx_postgres_"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    pwfile = base / "pw"
    pwfile.write_text(PG_ENV["DAGSTER_PG_PASSWORD"])
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres")
    _as_postgres(
        [str(bindir / "initdb"), "-D", str(data), "-U", "dagster", f"--pwfile={pwfile}", "--auth=scram-sha-256"]
    )
    port = free_port()
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    log = base / "postgres.log"
    proc = spawn(
        prefix + [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(sock)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(120):
            if _as_postgres_ready(bindir, port):
                break
            time.sleep(0.5)
        _as_postgres(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"],
            env={**os.environ, "PGPASSWORD": PG_ENV["DAGSTER_PG_PASSWORD"]},
        )
        yield {**PG_ENV, "DAGSTER_PG_PORT": str(port)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(base, ignore_errors=True)


def _as_postgres_ready(bindir: Path, port: int) -> bool:
    done = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True)
    return done.returncode == 0


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
            password=PG_ENV["DAGSTER_PG_PASSWORD"],
        ) as con,
        con.cursor() as cur,
    ):
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] == 5

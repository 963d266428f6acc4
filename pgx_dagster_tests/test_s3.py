"""The same pipeline on an S3 lake (moto's S3 server on loopback), through DuckDB httpfs loaded from
its wheel and dagster-aws's S3Resource: per-partition rows and content identical to the local run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgx_dagster.datasets import EVENTS
from pgx_dagster.lake import LakeResource, s3_client
from pgx_dagster.raw_inputs import validate_inputs
from pgx_dagster_tests.conftest import run_backfill
from pgx_dagster_tests.helpers import lake_fingerprint
from pgx_dagster_tests.services import REPO, moto_s3

BUCKET = "pgxdatalake"


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory):
    with moto_s3(REPO / "test-artifacts" / "logs", adopt=True) as env:
        s3_client().create_bucket(Bucket=BUCKET)
        yield env


@pytest.fixture(scope="module")
def s3_pipeline(pipeline, s3_env, tmp_path_factory):
    for f in pipeline.raw.rglob("*.parquet"):
        s3_client().upload_file(str(f), BUCKET, f"raw/{f.relative_to(pipeline.raw).as_posix()}")
    home = tmp_path_factory.mktemp("s3_home")
    # the S3 endpoint and credentials reach the runs through the daemon's environment
    return run_backfill(f"s3://{BUCKET}/raw", f"s3://{BUCKET}/lake", home, env=s3_env)


@pytest.mark.slow  # the whole backfill again on S3: about 100 s
def test_whole_pipeline_on_s3_matches_the_local_run(pipeline, s3_pipeline):
    assert s3_pipeline.succeeded and all(passed for *_, passed in s3_pipeline.checks)
    local, remote = lake_fingerprint(str(pipeline.lake)), lake_fingerprint(f"s3://{BUCKET}/lake")
    assert len(local) > 6 * 35
    assert remote == local


def test_partition_replacement_on_s3_leaves_no_stale_objects(s3_env):
    lake = LakeResource(raw_root=f"s3://{BUCKET}/raw", lake_root=f"s3://{BUCKET}/swap")
    final = EVENTS.dir(lake, "75+", 2020)
    with lake.publish_dir(final) as tmp:
        Path(tmp, "old_only.parquet").write_bytes(b"1")
        Path(tmp, "events.parquet").write_bytes(b"1")
    with pytest.raises(RuntimeError), lake.publish_dir(final) as tmp:
        Path(tmp, "events.parquet").write_bytes(b"half")
        raise RuntimeError("the step failed half way")
    assert sorted(Path(p).name for p in lake.files(f"{final}/*")) == ["events.parquet", "old_only.parquet"]
    with lake.publish_dir(final) as tmp:
        Path(tmp, "events.parquet").write_bytes(b"22")
        Path(tmp, "_checkpoint.json").write_text("{}")
    assert sorted(Path(p).name for p in lake.files(f"{final}/*")) == ["_checkpoint.json", "events.parquet"]
    assert final.endswith("age_band=75%2B/event_year=2020")
    assert lake.exists(f"{final}/events.parquet") and not lake.exists(f"{final}/old_only.parquet")


def test_extensions_load_from_wheels_with_no_network(tmp_path):
    """In a network namespace with no interface but loopback, httpfs and aws still load: they come
    from the PyPI wheels, never from DuckDB's extension repository."""
    script = (
        "from pgx_dagster.duck import DuckDBWorker\n"
        "with DuckDBWorker(s3=True).session() as s:\n"
        '    rows = s.rows("SELECT extension_name, loaded, install_mode FROM duckdb_extensions() "\n'
        "                  \"WHERE extension_name IN ('httpfs', 'aws') ORDER BY 1\")\n"
        "    print(rows)\n"
    )
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert "'extension_name': 'aws', 'loaded': True" in done.stdout
    assert "'extension_name': 'httpfs', 'loaded': True" in done.stdout
    assert "REPOSITORY" not in done.stdout


@pytest.mark.slow  # on the S3 pipeline's raw files
def test_validate_inputs_on_s3(s3_pipeline):
    ok, lines = validate_inputs(LakeResource(raw_root=f"s3://{BUCKET}/raw"))
    assert ok, lines
    assert f"uses s3://{BUCKET}/raw/medical_claims/*.parquet (the pgx raw layout)" in "\n".join(lines)
    ok, lines = validate_inputs(LakeResource(raw_root=f"s3://{BUCKET}/nothing-here"))
    assert not ok and any("ERROR: no files for medical_claims" in line for line in lines)


def test_an_apcd_release_on_s3_reads_as_it_does_locally(s3_env, tmp_path):
    """Headers by ranged GET, files through httpfs: the same raw tables as from the local folder."""
    from pgx_dagster.duck import DuckDBWorker
    from pgx_dagster.raw_inputs import RAW_VIEWS, register_raw
    from pgx_dagster_tests.test_apcd_format import release

    local = release(tmp_path / "apcd")
    for f in local.rglob("*.*"):
        s3_client().upload_file(str(f), BUCKET, f"apcd/{f.relative_to(local).as_posix()}")

    def tables(root: str, s3: bool) -> dict[str, list]:
        lake = LakeResource(raw_root=root, raw_format="apcd", extract_date="2020-06-30")
        with DuckDBWorker(s3=s3).session() as s:
            register_raw(s, lake)
            return {view: s.rows(f"SELECT * FROM {view} ORDER BY ALL") for view in RAW_VIEWS}

    remote = tables(f"s3://{BUCKET}/apcd", True)
    assert remote == tables(str(local), False)
    assert len(remote["raw_eligibility"]) == 8 and len(remote["raw_medical"]) == 2
    ok, lines = validate_inputs(LakeResource(raw_root=f"s3://{BUCKET}/apcd", raw_format="apcd"))
    assert ok, lines

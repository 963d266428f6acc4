"""Mistakes caught before anything runs, one line each (issue 32): a bad setting when the definitions load,
no persistent instance, an unknown partition key, a broken cohort file, missing raw files named in the
user's words, and `pgx partitions`. The command-line cases run the real commands in a subprocess."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterUnknownPartitionError,
    Definitions,
    Failure,
    define_asset_job,
)

from pgx_dagster import settings
from pgx_dagster.cohort_definitions import CohortFileError, load, load_all, skipping_broken
from pgx_dagster.definitions import defs
from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.lake import LakeResource
from pgx_dagster.ops.materialize import write_instance
from pgx_dagster.partitions import claims_partitions, unknown_key
from pgx_dagster.raw_inputs import register_raw
from pgx_dagster.settings import ENV_NAMES, TOOLING, SettingError, validate

REPO = settings.REPO_ROOT
BIN = Path(sys.executable).parent
# Dagster's own notice that `dagster asset materialize` is superseded by `dg launch` (two lines, not ours).
DAGSTER_NOTICE = ("SupersessionWarning", "return callback(*args, **kwargs)")


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without PGX_ settings or DAGSTER_HOME, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGX_") and k != "DAGSTER_HOME"}
    return {**env, **extra}


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, list[str], float]:
    """(exit code, the output's lines less Dagster's own supersession notice, seconds)."""
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    lines = [line for line in lines if not any(notice in line for notice in DAGSTER_NOTICE)]
    return done.returncode, lines, time.perf_counter() - started


def one_line(lines: list[str]) -> str:
    assert len(lines) == 1 and "Traceback" not in lines[0], "\n".join(lines)
    return lines[0]


@pytest.fixture
def home(tmp_path) -> Path:
    return write_instance(tmp_path / "home")


def materialize_command(partition: str = "65-74|2019") -> list[str]:
    return [str(BIN / "dagster"), "asset", "materialize", "-m", "pgx_dagster.definitions", "--select", "events",
            "--partition", partition]  # fmt: skip


# ---- 1. settings, validated when the definitions load --------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "bad", "valid"),
    [
        ("PGX_RAW_FORMAT", "tuwa", "one of pgx, tuva, desynpuf, apcd; did you mean 'tuva'?"),
        ("PGX_MIN_YEAR", "20x", "a year from 1900 to 2100"),
        ("PGX_SHARDS", "0", "a whole number from 1 to 999"),
        ("PGX_MEMORY_PER_WORKER", "2G", "a positive size such as 2GB"),
        ("PGX_EXECUTOR", "multiproces", "one of multiprocess, in_process; did you mean 'multiprocess'?"),
        ("PGX_LAKE_ROOT", "s3:/bucket/lake", "a folder or s3://bucket/prefix"),
        ("PGX_EXTRACT_DATE", "2021-13-01", "a date YYYY-MM-DD"),
        ("PGX_MAX_QUARANTINE_RATE", "5%", "a share from 0 to 1"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_setting_its_value_and_the_valid_ones(name, bad, valid):
    with pytest.raises(SettingError) as caught:
        validate({name: bad})
    message = str(caught.value)
    assert message.startswith(f"{name}={bad!r} is not valid: expected ") and valid in message, message
    assert caught.value.allow_retries is False  # a step that reads it fails at once


def test_a_path_given_must_exist_and_years_must_be_in_order(tmp_path):
    with pytest.raises(SettingError, match=f"PGX_RAW_ROOT='{tmp_path}/nope': {tmp_path}/nope does not exist"):
        validate({"PGX_RAW_ROOT": f"{tmp_path}/nope"})
    validate({"PGX_RAW_ROOT": f"{tmp_path}/nope"}, check_paths=False)  # `pgx validate-inputs` reports it instead
    with pytest.raises(SettingError, match="PGX_MIN_YEAR=2021 is after PGX_MAX_YEAR=2020"):
        validate({"PGX_MIN_YEAR": "2021"})


def test_an_unknown_pgx_variable_is_an_error_naming_the_closest_setting():
    with pytest.raises(SettingError, match="PGX_RAW_FORMATT is not a setting: did you mean PGX_RAW_FORMAT?"):
        validate({"PGX_RAW_FORMATT": "tuva"})
    with pytest.raises(SettingError, match="PGX_SHARD_COUNT is not a setting: did you mean PGX_SHARDS?"):
        validate({"PGX_SHARD_COUNT": "4"})
    # the variables the tests, benchmarks and deployment set are known
    assert validate({"PGX_SAMPLE_DATA": "x", "PGX_FLOOR_MEMORY": "1GB", "PGX_CODE_LOCATION_HOST": "code"}) == []


def test_dagster_asset_materialize_with_a_typo_in_the_raw_format_stops_at_load_in_one_line(home):
    code, lines, _ = run(materialize_command(), clean_env(DAGSTER_HOME=str(home), PGX_RAW_FORMAT="tuwa"))
    line = one_line(lines)
    assert code == 2 and line == (
        "pgx: PGX_RAW_FORMAT='tuwa' is not valid: expected one of pgx, tuva, desynpuf, apcd; did you mean 'tuva'?"
    )
    assert not any("STEP_UP_FOR_RETRY" in line or "RUN_START" in line for line in lines)  # nothing ran


def test_pgx_commands_check_settings_before_starting_anything(home):
    code, lines, _ = run([str(BIN / "pgx"), "materialize"], clean_env(DAGSTER_HOME=str(home), PGX_SHARDS="abc"))
    assert code != 0 and one_line(lines) == "pgx: PGX_SHARDS='abc' is not valid: expected a whole number from 1 to 999"


def test_a_bad_setting_read_by_a_step_fails_it_once_never_retried(tmp_path):
    """A raw format that reaches a step (e.g. through run config) fails it at once: no retry with backoff."""
    with DagsterInstance.ephemeral() as instance:
        events = person_index_with_raw_format(tmp_path, "tuwa", instance).all_events
    assert any(e.event_type == DagsterEventType.RUN_FAILURE for e in events)
    assert not [e for e in events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    failure = next(e for e in events if e.event_type == DagsterEventType.STEP_FAILURE)
    assert "PGX_RAW_FORMAT='tuwa' is not valid" in failure.event_specific_data.user_failure_data.description


def person_index_with_raw_format(tmp_path: Path, raw_format: str, instance: DagsterInstance):
    """person_index materialized in this process with the raw format given (as run config could give it)."""
    lake = LakeResource(raw_root=str(tmp_path), lake_root=str(tmp_path / "lake"), raw_format=raw_format)
    job = define_asset_job("person_index_only", selection=[AssetKey("person_index")])
    job_defs = Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job],
                           resources={"lake": lake, "duckdb": DuckDBWorker()})  # fmt: skip
    return job_defs.resolve_job_def("person_index_only").execute_in_process(instance=instance, raise_on_error=False)


# ---- the settings' names ---------------------------------------------------------------------------------------
def test_every_pgx_name_in_the_package_source_is_a_setting_or_an_allowed_variable():
    # a name followed by `*` or `<` is a family (PGX_RAW_* = PGX_RAW_MEDICAL, ..., PGX_<FIELD>), not a setting
    pattern = re.compile(r"PGX_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_]*[*<])")
    found = {name for path in (REPO / "pgx_dagster").rglob("*.py") for name in pattern.findall(path.read_text())}
    assert found and found - set(ENV_NAMES) - set(TOOLING) == set()


# ---- 2. no persistent instance ---------------------------------------------------------------------------------
def test_dagster_asset_materialize_without_dagster_home_refuses_in_one_line():
    code, lines, _ = run(materialize_command(), clean_env())
    line = one_line(lines)
    assert code == 2 and line.startswith("pgx: DAGSTER_HOME is not set: `dagster asset materialize` would run on a")


def test_pgx_materialize_and_status_without_dagster_home_refuse_in_one_line():
    for command in ("materialize", "status"):
        code, lines, _ = run([str(BIN / "pgx"), command], clean_env())
        assert code != 0 and one_line(lines).startswith("pgx: DAGSTER_HOME is not set")


def test_a_run_on_a_throwaway_or_dagster_dev_instance_says_so_in_its_log(tmp_path):
    with DagsterInstance.ephemeral() as instance:
        result = person_index_with_raw_format(tmp_path, "tuwa", instance)
        logs = instance.all_logs(result.run_id)
    assert any("throwaway in-memory Dagster instance" in (entry.user_message or "") for entry in logs)
    temporary = settings.instance_warning(False, str(tmp_path / ".tmp_dagster_home_abc123"))
    assert temporary and "(`dagster dev` without DAGSTER_HOME) deletes when it exits" in temporary
    assert settings.instance_warning(False, str(tmp_path / "dagster_home")) is None


# ---- 3. unknown partition keys ---------------------------------------------------------------------------------
def test_an_unknown_partition_key_explains_the_order_and_lists_valid_keys():
    with pytest.raises(DagsterUnknownPartitionError) as caught:
        claims_partitions.validate_partition_key("2019|65-74")
    message = str(caught.value)
    assert "did you mean '65-74|2019'?" in message and "age_band|event_year" in message
    assert "e.g. 0-17|2016, 45-54|2018, 75+|2020" in message
    assert "no age band '65-75'; did you mean '65-74'?" in unknown_key("65-75|2019")
    assert unknown_key("65-74|2019") is None and unknown_key("000") is None and unknown_key("opioid_ed") is None


def test_dagster_asset_materialize_with_a_key_in_the_wrong_order_is_one_line(home):
    code, lines, _ = run(materialize_command("2019|65-74"), clean_env(DAGSTER_HOME=str(home)))
    line = one_line(lines)
    assert code == 2 and line.startswith(
        "pgx: unknown partition key '2019|65-74' (wrong order: did you mean '65-74|2019'?"
    )


def test_pgx_materialize_with_a_key_in_the_wrong_order_stops_before_starting_anything(home):
    code, lines, seconds = run([str(BIN / "pgx"), "materialize", "--partitions", "2019|65-74"],
                               clean_env(DAGSTER_HOME=str(home)))  # fmt: skip
    assert code != 0 and "a claims partition key is age_band|event_year" in one_line(lines)
    assert seconds < 15 and not (home / "logs").exists()  # no webserver or daemon was started


# ---- 4. cohort files -------------------------------------------------------------------------------------------
def broken_cohorts(folder: Path) -> Path:
    """The shipped cohort, and a copy with a misspelt setting."""
    folder.mkdir()
    shutil.copy(REPO / "cohorts" / "opioid_ed.toml", folder)
    text = (REPO / "cohorts" / "opioid_ed.toml").read_text()
    text = re.sub(r"(?m)^lookback_days", "lookback_day", text).replace('name = "opioid_ed"', 'name = "opioid_ed_b"')
    (folder / "opioid_ed_b.toml").write_text(text)
    return folder


def test_an_unknown_cohort_setting_suggests_the_closest(tmp_path):
    folder = broken_cohorts(tmp_path / "cohorts")
    with pytest.raises(
        CohortFileError, match=re.escape("unknown setting `lookback_day`; did you mean `lookback_days`?")
    ):
        load(folder / "opioid_ed_b.toml")
    with pytest.raises(CohortFileError):
        load_all(folder)  # the code location does not load with a broken cohort file
    with skipping_broken() as broken:
        assert [d.name for d in load_all(folder)] == ["opioid_ed"]
    assert list(broken) == [str(folder / "opioid_ed_b.toml")]


@pytest.mark.slow  # `pgx status` over a backfill with a broken cohort file (12 s): `make test-slow`
def test_pgx_status_reports_a_broken_cohort_file_and_shows_the_rest(tmp_path, home):
    from pgx_dagster.ops.backfill import Client
    from pgx_dagster.ops.services import free_port, prepare_storage, spawn, stop, wait_for_url

    # a backfill recorded in the instance through the webserver, as the UI launches one (no daemon runs it)
    prepare_storage(home)
    port, log = free_port(), tmp_path / "webserver.log"
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"]
    env = clean_env(DAGSTER_HOME=str(home))
    web = spawn(command, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for_url(f"{url}/server_info", 120, web, log)
        backfill_id = Client(url).launch(["events"], ["65-74|2019"], title="status test")
    finally:
        stop(web)
    env = clean_env(DAGSTER_HOME=str(home), PGX_COHORT_DIR=str(broken_cohorts(tmp_path / "cohorts")))
    code, lines, _ = run([str(BIN / "pgx"), "status"], env)
    assert code == 0, "\n".join(lines)
    assert lines[0].startswith("Left out below, a broken cohort file: cohort definition ")
    assert "opioid_ed_b.toml: unknown setting `lookback_day`; did you mean `lookback_days`?" in lines[0]
    assert lines[1].startswith(f"Backfill {backfill_id}: ") and any(line.startswith("events ") for line in lines)


# ---- 5. the user's words ---------------------------------------------------------------------------------------
def test_missing_raw_files_are_named_by_format_files_and_raw_root_not_by_an_internal_view(tmp_path):
    with pytest.raises(Failure) as caught, DuckDBWorker().session() as s:
        register_raw(s, LakeResource(raw_root=str(tmp_path)))
    message = caught.value.description
    assert message.startswith(f"no medical claims files under PGX_RAW_ROOT={tmp_path} (PGX_RAW_FORMAT=pgx): "
                              "expected medical_claims/*.parquet or ")  # fmt: skip
    assert "src_" not in message and "point PGX_RAW_ROOT (or PGX_RAW_MEDICAL) at them" in message


# ---- 6. pgx partitions -----------------------------------------------------------------------------------------
def test_pgx_partitions_lists_every_key_with_the_order_explained():
    code, lines, _ = run([str(BIN / "pgx"), "partitions"], clean_env(PGX_MIN_YEAR="2018", PGX_MAX_YEAR="2019"))
    assert code == 0
    assert lines[0].startswith("Claims partitions (14): ") and "A key is age_band|event_year" in lines[0]
    assert lines[1].split() == ["0-17|2018", "0-17|2019"] and "65-74|2019" in lines[6]
    assert lines[lines.index(next(x for x in lines if x.startswith("Shard partitions"))) + 1].split() == ["000"]
    assert "opioid_ed" in lines[lines.index(next(x for x in lines if x.startswith("Cohort partitions"))) + 1]

"""One typed configuration (pgx_dagster/settings.py): every setting a field of `Settings`, set by the
environment over the deployment's TOML file over its default; `pgx config` shows where each value came from;
an unknown variable or key names the closest setting; ECS tasks get the settings from the same object; the
module sits below everything that reads it, and no other module reads a PGX_ variable."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pgx_dagster import settings
from pgx_dagster.settings import (
    COMMAND,
    ENV_NAMES,
    LOAD,
    REPO_ROOT,
    RUN,
    SettingError,
    Settings,
    get_settings,
    load,
    task_environment,
    validate,
)

PACKAGE = REPO_ROOT / "pgx_dagster"
BIN = Path(sys.executable).parent
LAYERED = ("settings", "contracts", "cohort_definitions", "partitions")


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without PGX_ variables, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PGX_")}, **extra}


def toml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deployment.toml"
    path.write_text(text)
    return path


# ---- the object and its sources ----------------------------------------------------------------------------
def test_every_field_has_a_meaning_valid_values_a_unit_and_when_it_is_read():
    for field, info in Settings.model_fields.items():
        extra = info.json_schema_extra or {}
        assert info.description and extra.get("valid"), field
        assert "unit" in extra and extra.get("read_at") in (LOAD, RUN, COMMAND), field
    assert ENV_NAMES["PGX_RAW_ROOT"] == "raw_root" and len(ENV_NAMES) == len(Settings.model_fields)


def test_the_file_sets_fields_and_the_environment_overrides_it(tmp_path):
    path = toml_file(tmp_path, 'shards = 3\nraw_format = "tuva"\nextract_date = 2021-06-30\nmax_event_drop = 0.4\n')
    got = load({"PGX_CONFIG_FILE": str(path), "PGX_SHARDS": "5"})
    assert (got.shards, got.raw_format, got.max_event_drop) == (5, "tuva", 0.4)
    assert got.extract_date is not None and got.extract_date.isoformat() == "2021-06-30"
    assert got.origin("shards") == "environment" and got.origin("raw_format") == str(path)
    assert got.origin("lake_root") == "default" and got.lake_root == "data/lake"
    # no file: the defaults
    assert load({"PGX_CONFIG_FILE": "none"}).shards == 1


def test_a_bad_value_in_the_file_is_one_line_naming_the_file_the_key_and_the_valid_values(tmp_path):
    path = toml_file(tmp_path, "shards = 0\n")
    with pytest.raises(SettingError) as caught:
        load({"PGX_CONFIG_FILE": str(path)})
    assert str(caught.value) == f"{path}: shards=0 is not valid: expected a whole number from 1 to 999"
    assert caught.value.allow_retries is False
    with pytest.raises(SettingError, match=r"^PGX_SHARDS='x' is not valid"):  # the environment's value is named
        load({"PGX_CONFIG_FILE": str(path), "PGX_SHARDS": "x"})


def test_an_unknown_key_of_the_file_names_the_closest_setting(tmp_path):
    for text, near in (("raw_fromat = 'tuva'\n", "raw_format"), ("PGX_SHARDS = 4\n", "shards")):
        path = toml_file(tmp_path, text)
        with pytest.raises(SettingError, match=rf"{path}: .* is not a setting: did you mean {near}\?"):
            load({"PGX_CONFIG_FILE": str(path)})
    path = toml_file(tmp_path, "config_file = 'other.toml'\n")
    with pytest.raises(SettingError, match="config_file is set by the environment only"):
        load({"PGX_CONFIG_FILE": str(path)})


def test_the_file_chosen_must_exist_and_be_toml(tmp_path):
    with pytest.raises(SettingError, match=r"^PGX_CONFIG_FILE='config/nope.toml': no such file"):
        load({"PGX_CONFIG_FILE": "config/nope.toml"})
    path = toml_file(tmp_path, "shards = \n")
    with pytest.raises(SettingError, match=rf"^{path}: not valid TOML"):
        load({"PGX_CONFIG_FILE": str(path)})


def test_the_committed_deployment_files_load_and_name_only_settings():
    for name in ("local.toml", "aws.toml"):
        path = REPO_ROOT / "config" / name
        loaded = load({"PGX_CONFIG_FILE": f"config/{name}"})
        keys = set(tomllib.loads(path.read_text()))
        assert {k for k in keys if loaded.origin(k) != f"config/{name}"} == set()
        # the keys shown commented out are settings too
        commented = re.findall(r"^#? ?([a-z0-9_]+) = ", path.read_text(), re.MULTILINE)
        assert commented and set(commented) <= set(Settings.model_fields), (name, commented)
    aws = load({"PGX_CONFIG_FILE": "config/aws.toml"})
    assert aws.lake_root.startswith("s3://") and aws.partitions_per_run == 1


def test_get_settings_reads_the_environment_and_the_file_when_they_change(tmp_path, monkeypatch):
    monkeypatch.setenv("PGX_MAX_YEAR", "2017")
    assert settings.event_years() == [2016, 2017]
    monkeypatch.setenv("PGX_MAX_YEAR", "2018")
    assert settings.event_years() == [2016, 2017, 2018] and get_settings() is get_settings()
    path = toml_file(tmp_path, "guard_min_rows = 3\n")
    monkeypatch.setenv("PGX_CONFIG_FILE", str(path))
    assert settings.value("PGX_GUARD_MIN_ROWS") == 3
    path.write_text("guard_min_rows = 40\n# longer, so the size tells the change too\n")
    assert settings.value("PGX_GUARD_MIN_ROWS") == 40
    monkeypatch.setenv("PGX_SHARDZ", "2")
    with pytest.raises(SettingError, match="PGX_SHARDZ is not a setting: did you mean PGX_SHARDS?"):
        get_settings()


def test_task_environment_carries_every_explicit_setting_and_rebuilds_the_same_object(tmp_path):
    path = toml_file(tmp_path, 'lake_root = "s3://bucket/lake"\nextract_date = 2021-06-30\nprofile = true\n')
    env = {"PGX_CONFIG_FILE": str(path), "PGX_MIN_YEAR": "2018", "PGX_MEMORY_PER_WORKER": "3GB"}
    task = task_environment(env)
    assert task == {
        "PGX_LAKE_ROOT": "s3://bucket/lake",
        "PGX_EXTRACT_DATE": "2021-06-30",
        "PGX_PROFILE": "true",
        "PGX_MIN_YEAR": "2018",
        "PGX_MEMORY_PER_WORKER": "3GB",
        "PGX_CONFIG_FILE": "none",  # the values carry the file's; the task's image may hold another file
    }
    assert all(isinstance(v, str) for v in task.values())
    assert load(task).model_dump() == {**load(env).model_dump(), "config_file": "none"}


def test_validate_checks_paths_given_but_not_defaults(tmp_path):
    validate({}, check_paths=True)  # data/raw need not exist until something reads it
    with pytest.raises(SettingError, match="PGX_GENOTYPES='/nope/x.csv': /nope/x.csv does not exist"):
        validate({"PGX_GENOTYPES": "/nope/x.csv"})
    path = toml_file(tmp_path, "cohort_dir = 'no_such_folder'\n")
    with pytest.raises(SettingError, match="PGX_COHORT_DIR='no_such_folder': no such folder"):
        validate({"PGX_CONFIG_FILE": str(path)})


# ---- pgx config, and the definitions reading the file ----------------------------------------------------------
def test_pgx_config_prints_every_setting_its_value_and_where_it_came_from(tmp_path):
    path = toml_file(tmp_path, "shards = 3\n")
    env = clean_env(PGX_CONFIG_FILE=str(path), PGX_MIN_YEAR="2018")
    done = subprocess.run([str(BIN / "pgx"), "config"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:]}
    assert set(rows) == set(ENV_NAMES)
    assert rows["PGX_SHARDS"][1:] == ["3", str(path)]
    assert rows["PGX_MIN_YEAR"][1:] == ["2018", "environment"]
    assert rows["PGX_RAW_FORMAT"][1:] == ["pgx", "default"]
    assert rows["PGX_CONFIG_FILE"][-1] == "environment"
    done = subprocess.run([str(BIN / "pgx"), "config"], capture_output=True, text=True, timeout=120,
                          env=clean_env(PGX_RAW_FROMAT="tuva"))  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip() == (
        "pgx: PGX_RAW_FROMAT is not a setting: did you mean PGX_RAW_FORMAT? (docs/configuration.md lists them)"
    )


def test_the_definitions_take_their_shape_from_the_file(tmp_path):
    """Definition-time values (the shards, the years) come from the file as from the environment."""
    path = toml_file(tmp_path, "shards = 3\nmin_year = 2019\n")
    done = subprocess.run([str(BIN / "pgx"), "partitions"], capture_output=True, text=True, timeout=120,
                          env=clean_env(PGX_CONFIG_FILE=str(path)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Shard partitions (3, PGX_SHARDS)" in done.stdout and "event years 2019-2020" in done.stdout


# ---- layering: configuration below everything that reads it --------------------------------------------------
def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(pgx_dagster module imported, whether inside a function) for every import of the package in `tree`."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("pgx_dagster"):
                names = [f"{child.module}.{a.name}" for a in child.names] if child.module == "pgx_dagster" else []
                found.extend((name, inner) for name in (names or [child.module]))
            elif isinstance(child, ast.Import):
                found.extend((a.name, inner) for a in child.names if a.name.startswith("pgx_dagster"))
            visit(child, inner)

    visit(tree, False)
    return found


def test_settings_imports_nothing_from_the_package():
    assert _imports(ast.parse((PACKAGE / "settings.py").read_text())) == []


def test_settings_contracts_cohorts_and_partitions_import_each_other_only_at_the_top_without_a_circle():
    graph: dict[str, set[str]] = {}
    for name in LAYERED:
        imports = _imports(ast.parse((PACKAGE / f"{name}.py").read_text()))
        among = [(module.removeprefix("pgx_dagster."), inner) for module, inner in imports]
        among = [(module, inner) for module, inner in among if module in LAYERED]
        assert not [module for module, inner in among if inner], f"{name}.py imports one of {LAYERED} in a function"
        graph[name] = {module for module, _ in among}
    # in layers: each imports only those before it (settings, contracts, cohort_definitions, partitions)
    for i, name in enumerate(LAYERED):
        assert graph[name] <= set(LAYERED[:i]), (name, graph[name])
    # and each imports alone in a fresh interpreter
    for name in LAYERED:
        done = subprocess.run([sys.executable, "-c", f"import pgx_dagster.{name}"], capture_output=True, text=True,
                              cwd=REPO_ROOT, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]


def _pgx_reads(tree: ast.AST) -> list[int]:
    """Lines that read a PGX_ variable by name: os.environ["PGX_X"], os.environ.get / os.getenv / environ.get /
    env.pop("PGX_X"), EnvVar("PGX_X")."""

    def pgx(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("PGX_")

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and pgx(node.slice) and "environ" in ast.unparse(node.value):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and node.args and pgx(node.args[0]):
            func = ast.unparse(node.func)
            if func.endswith(("environ.get", "getenv", "environ.pop", "env.get")) or func.startswith("EnvVar"):
                lines.append(node.lineno)
    return lines


def test_no_module_but_settings_reads_a_pgx_variable():
    # the detector sees each way of reading one
    sample = 'os.environ["PGX_A"]\nos.environ.get("PGX_B")\nos.getenv("PGX_C")\nEnvVar.int("PGX_D")\n'
    sample += 'environ.get("PGX_E")'
    assert _pgx_reads(ast.parse(sample)) == [1, 2, 3, 4, 5]
    readers = {
        str(path.relative_to(REPO_ROOT)): found
        for path in PACKAGE.rglob("*.py")
        if path.name != "settings.py" or path.parent != PACKAGE
        if (found := _pgx_reads(ast.parse(path.read_text())))
    }
    assert readers == {}, f"read the setting through pgx_dagster.settings.get_settings(): {readers}"

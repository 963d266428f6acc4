"""Every setting of the project, as one typed object: `Settings`, a pydantic-settings `BaseSettings`.

A setting is a field (its default, unit, meaning, valid values and when it is read in the Field), set by
- an environment variable `PGX_<FIELD>` (PGX_RAW_ROOT sets `raw_root`), which overrides
- the deployment's file, `config/local.toml` (when it exists) or the file PGX_CONFIG_FILE names (a key per field:
  `raw_root = "s3://bucket/raw"`), which overrides
- the field's default.

`get_settings()` is the object every reader goes through: built when first asked and again whenever a PGX_
variable or the file changes (tests set variables with monkeypatch.setenv), so a value is read when it is used.
Definition-time values (the partition years, the shards, the executor) are read when the definitions load.
`validate()` checks everything at once (the definitions' load, every `pgx` command): a bad value, an unknown
PGX_ variable or an unknown key of the file is one line naming it, its value and the valid ones (or the
closest setting) - a SettingError, a Dagster Failure never retried.

This module sits below everything that reads it: it imports nothing from pgx_dagster. The reference page
(docs/configuration.md) is generated from `Settings` by `python -m pgx_dagster.docgen`.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
import tomllib
import warnings
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from dagster import Failure
from pydantic import AfterValidator, Field, PrivateAttr, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = REPO_ROOT / "sql"
COHORT_DIR = REPO_ROOT / "cohorts"
PREFIX = "PGX_"
# The deployment's file of settings: PGX_CONFIG_FILE names it (relative: to the repository; `none`: no file),
# else this one when it exists.
DEFAULT_CONFIG_FILE = Path("config/local.toml")
NO_FILE = "none"

DEFAULT_RAW_ROOT = "data/raw"
DEFAULT_LAKE_ROOT = "data/lake"
DEFAULT_MIN_YEAR = 2016
DEFAULT_MAX_YEAR = 2020
DEFAULT_DEMO_MEMBERS = 20_000
# A worker's memory budget (PGX_MEMORY_PER_WORKER): the peak RSS of its process, the legacy pipeline's 2 GB.
DEFAULT_MEMORY_PER_WORKER = "2GB"
# What a step's process holds beside DuckDB's buffers: Dagster, pandas, pandera, statsmodels (265 MiB imported),
# a run's machinery, a check's batches, query results. DuckDB's memory_limit is the budget less this. At 50M
# claim rows, with 512 MB reserved, a check's process peaked 538 MiB above DuckDB's limit, 180 of them freed
# memory jemalloc had not yet returned (now returned, see duck.py); with 640 MB reserved a cohort's
# exposure_flags.sql ran out of memory as a sorted temp table (since written straight to its file).
PROCESS_RESERVE_BYTES = 512_000_000
# Rows per unit of a global step (PGX_UNIT_ROWS): at 10M claim rows, units of 1M kept intake at 1.4 GB
# peak RSS (2.2 GB with 2.5M), at 53 s against 52 s; demographics counts claim observations (claim rows
# grouped by member-year and value, ~1.9M at 10M claim rows): units of 1M, 1.35 GB.
DEFAULT_UNIT_ROWS = 1_000_000
# Shards of the whole-extract work (PGX_SHARDS): each a partition of claims_intake, its own run and step.
MAX_SHARDS = 999
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the most S3 allows
EXECUTORS = ("multiprocess", "in_process")
START_METHODS = ("forkserver", "spawn")
# When a setting is read: when the definitions load (it shapes the partitions, checks or executor: a change
# needs the code location reloaded), when a run's step reads it, or only by a `pgx` command.
LOAD, RUN, COMMAND = "definitions load", "run", "pgx command"

# PGX_ variables that are no setting of the package but are read by the tests, the benchmarks and the
# deployment: allowed in the environment, listed on the reference page.
TOOLING = {
    "PGX_SAMPLE_DATA": ("../shared/data", "Tests: the folder of the public sample extracts."),
    "PGX_FLOOR_MEMORY": ("80% of RAM", "Benchmarks: the memory of the single-DuckDB floor."),
    "PGX_CODE_LOCATION_HOST": ("", "deploy/workspace.yaml: the host of the code location server."),
}


class SettingError(Failure, ValueError):
    """A setting with a value it cannot have, as one line: the setting, its value, the valid ones. A
    Failure that is never retried (a step that reads a bad setting fails at once), and a ValueError."""

    def __init__(self, message: str):
        super().__init__(description=message, allow_retries=False)

    def __str__(self) -> str:
        return self.description or ""


def closest(word: str, choices, cutoff: float = 0.6) -> str | None:
    """The choice nearest to `word` (difflib), if any is near enough."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return found[0] if found else None


def did_you_mean(word: str, choices, cutoff: float = 0.6) -> str:
    near = closest(word, choices, cutoff)
    return f"; did you mean {near!r}?" if near else ""


_BYTE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip
_BYTES = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)
SIZE_VALID = "a positive size such as 2GB, 1500MB or 2GiB"


def parse_bytes(text: str, name: str = "PGX_MEMORY_PER_WORKER") -> int:
    """'2GB', '1.5 GB', '512MiB' as bytes, with DuckDB's units (GB = 10^9 bytes, GiB = 2^30)."""
    match = _BYTES.fullmatch(str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _BYTE_UNITS or float(match.group(1)) <= 0:
        raise SettingError(f"{name}={text!r} is not valid: expected {SIZE_VALID}")
    return int(float(match.group(1)) * _BYTE_UNITS[unit])


# ---- the kinds of value: a type pydantic validates, and the valid values in words --------------------------
class _Hint(ValueError):
    """A validator's refusal: its text is appended to the one-line message (", 'x' is not ...")."""


def _size(value: str) -> str:
    try:
        parse_bytes(value)
    except SettingError:
        raise _Hint("") from None
    return value


def _uris(value: str, several: bool = False) -> str:
    for part in [p.strip() for p in value.split(",")] if several else [value]:
        if not part:
            raise _Hint("")
        if part.lower().startswith("s3:") and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]+(/.*)?", part):
            raise _Hint(f" ({part!r} is not an s3://bucket/prefix URI)")
    return value


def _url(value: str) -> str:
    if value and not re.fullmatch(r"https?://\S+", value):
        raise _Hint("")
    return value


Size = Annotated[str, AfterValidator(_size)]
Folders = Annotated[str, AfterValidator(lambda v: _uris(v, several=True))]
Uri = Annotated[str, AfterValidator(_uris)]
Location = Annotated[str, AfterValidator(lambda v: _uris(v) if v else v)]  # a file, glob or folder; "" = unset
Url = Annotated[str, AfterValidator(_url)]

FLAG_VALID = "1 / true / yes, or 0 / false / no"
SHARE_VALID = "a share from 0 to 1, e.g. 0.05"
DATE_VALID = "a date YYYY-MM-DD"
FOLDERS_VALID = "a folder or s3://bucket/prefix (several, comma-separated, for the tuva and desynpuf formats)"
URI_VALID = "a folder or s3://bucket/prefix"
PATH_VALID = "a file, glob or folder, local or s3://bucket/key"
FILE_VALID = "a file, local or s3://"
FOLDER_VALID = "a local folder (relative: to the repository)"
URL_VALID = "an http:// or https:// URL"
TEXT_VALID = "any text"


def _range(what: str, low: float | None, high: float | None = None) -> str:
    if low is not None and high is not None:
        return f"{what} from {low:g} to {high:g}"
    return f"{what} of at least {low:g}" if low is not None else what


def _field(
    default: Any,
    meaning: str,
    valid: str,
    *,
    unit: str = "",
    when: str = RUN,
    shown: str | None = None,
    must_exist: bool = False,
    **constraints: Any,
) -> Any:
    """A setting's Field: its meaning (the description), and in json_schema_extra its valid values in words,
    unit, when it is read, the default as the page shows it (`shown`, for a default computed when read) and
    whether a local path given must exist."""
    extra = {"valid": valid, "unit": unit, "read_at": when, "shown": shown, "must_exist": must_exist}
    return Field(default, description=meaning, json_schema_extra=extra, **constraints)


def _whole(low: int, high: int | None = None, what: str = "a whole number") -> dict[str, Any]:
    return {"valid": _range(what, low, high), "ge": low, **({"le": high} if high is not None else {})}


def _number(low: float) -> dict[str, Any]:
    return {"valid": _range("a number", low), "ge": low}


def _share() -> dict[str, Any]:
    return {"valid": SHARE_VALID, "ge": 0, "le": 1}


def _choice(*choices: str) -> str:
    return "one of " + ", ".join(choices)


class Settings(BaseSettings):
    """The project's settings: one field per PGX_ variable (docs/configuration.md)."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_ignore_empty=True,  # a PGX_ variable set to "" is unset, as before
        extra="forbid",  # an unknown key of the file is an error
        allow_inf_nan=False,
        validate_default=False,
    )

    # fmt: off
    # -- the file ------------------------------------------------------------------------------------------
    config_file: str = _field(
        "", "The file of settings of this deployment (TOML, a key per setting, e.g. `raw_root = \"s3://b/raw\"`; "
        "committed: config/local.toml, config/aws.toml); `none`: no file. The environment overrides it. Only "
        "the environment sets it.", "a TOML file (relative: to the repository), or none", when=LOAD,
        shown="config/local.toml when it exists")
    # -- the data ------------------------------------------------------------------------------------------
    raw_root: Folders = _field(
        DEFAULT_RAW_ROOT, "Where the raw extract is read: a folder or s3://bucket/prefix; the tuva, desynpuf and "
        "apcd formats take several, comma-separated. A local folder given must exist.", FOLDERS_VALID,
        must_exist=True)
    raw_format: Literal["pgx", "tuva", "desynpuf", "apcd"] = _field(
        "pgx", "The layout of the raw extract: pgx (our Parquet layout, and the legacy pipeline's), tuva (the Tuva "
        "Project input layer), desynpuf (CMS DE-SynPUF CSV files) or apcd (a state APCD release: MC/PC/ME/PE files "
        "by APCD element code).", _choice("pgx", "tuva", "desynpuf", "apcd"))
    raw_delimiter: Literal["auto", "pipe", "comma", "tab"] = _field(
        "auto", "apcd format: the delimiter of its text files: auto (detected per file from its first line), pipe, "
        "comma or tab.", _choice("auto", "pipe", "comma", "tab"))
    apcd_layout: Location = _field(
        "", "apcd format: a folder with the column layout of files that come without a header: mc_columns.csv, "
        "pc_columns.csv, me_columns.csv, pe_columns.csv, each with columns `column` and `element`, one row per "
        "field in the order of the file's fields.", PATH_VALID, must_exist=True)
    apcd_elements: Location = _field(
        "", "apcd format: which APCD elements the pipeline reads for what, when a state numbers them differently "
        "(the layout of sql/formats/apcd/elements.csv); unset: that file.", FILE_VALID, must_exist=True)
    lake_root: Uri = _field(DEFAULT_LAKE_ROOT, "Where every dataset is written: a folder or s3://bucket/prefix.",
                            URI_VALID)
    raw_medical: Location = _field(
        "", "pgx and apcd formats: the exact path or glob of the medical claims (apcd: of the MC files, or their "
        "folder), used as given instead of the folders under PGX_RAW_ROOT.", PATH_VALID, must_exist=True)
    raw_pharmacy: Location = _field(
        "", "pgx and apcd formats: the exact path or glob of the pharmacy claims (apcd: of the PC files, or their "
        "folder).", PATH_VALID, must_exist=True)
    raw_eligibility: Location = _field(
        "", "pgx and apcd formats: the exact path or glob of the member eligibility (apcd: of the ME files, or "
        "their folder).", PATH_VALID, must_exist=True)
    raw_linkage: Location = _field(
        "", "pgx format: the exact path or glob of the member linkage (person) table.", PATH_VALID, must_exist=True)
    extract_date: date | None = _field(
        None, "The date the raw extract was cut: service dates after it are impossible, open enrolment spans run "
        "to it.", DATE_VALID, shown="today")
    earliest_service_date: date = _field(
        date(1990, 1, 1), "Service and fill dates before it are implausible (sentinels such as 1900-01-01 or "
        "1970-01-01): the line is quarantined as implausible_<date column>, and its claim is placed by its other "
        "lines. No APCD holds claims from before 1990.", DATE_VALID)
    opioid_ndc_file: Location = _field(
        "", "The opioid NDC / MME conversion file (layout of sql/codesets/opioid_ndc.csv, e.g. built by `pgx "
        "build-opioid-ndc` from a newer CDC list, or by `pgx build-ndc-map` from the FDA NDC Directory); unset: "
        "CDC's 2017 list as shipped.", FILE_VALID, must_exist=True)
    ndc_ingredient_file: Location = _field(
        "", "The NDC -> ingredient map of the non-opioid drugs with CPIC guidance (layout of "
        "sql/codesets/ndc_ingredient.csv, built by `pgx build-ndc-map`); unset: the shipped map, whose NDCs are "
        "placeholders only the synthetic data uses.", FILE_VALID, must_exist=True)
    cohort_dir: str = _field(
        "cohorts", "The folder of the cohort definitions, one TOML file per cohort (relative: to the "
        "repository).", FOLDER_VALID, when=LOAD)
    genotypes: Location = _field(
        "", "Genotypes (person_id, gene, phenotype in CPIC terms): a CSV or Parquet file, a glob or a folder; "
        "unset: <PGX_RAW_ROOT>/genotypes/ when it exists, else none.", PATH_VALID, must_exist=True)
    lake_url: Url = _field(
        "", "The base URL that serves the lake root (a static server, CloudFront, an S3 website endpoint): the "
        "UI's links to reports and exports; unset: presigned URLs on S3, the path as text locally.", URL_VALID)
    presign_seconds: int = _field(
        MAX_PRESIGN_SECONDS, "How long a presigned link to a lake file on S3 is valid (7 days is the most S3 "
        "allows).", unit="seconds", **_whole(1, MAX_PRESIGN_SECONDS))
    # -- the partitions ------------------------------------------------------------------------------------
    min_year: int = _field(DEFAULT_MIN_YEAR, "First event year of the partitions.", unit="year", when=LOAD,
                           **_whole(1900, 2100, "a year"))
    max_year: int = _field(DEFAULT_MAX_YEAR, "Last event year of the partitions (not before PGX_MIN_YEAR).",
                           unit="year", when=LOAD, **_whole(1900, 2100, "a year"))
    shards: int = _field(
        1, "Shards (partitions of claims_intake, person_facts, member_demographics) the whole-extract work is "
        "split into, each its own run; a change needs intake materialized again.", unit="shards", when=LOAD,
        **_whole(1, MAX_SHARDS))
    # -- execution -----------------------------------------------------------------------------------------
    max_workers: int | None = _field(
        None, "Workers: concurrent step processes (multiprocess executor) and the runs a backfill is split for.",
        unit="workers", when=LOAD, shown="min(48, cores x 1.5)", **_whole(1))
    memory_per_worker: Size = _field(
        DEFAULT_MEMORY_PER_WORKER, "A worker's memory budget (its process's peak RSS); DuckDB's memory_limit is "
        "this less what the process holds beside it.", SIZE_VALID, unit="bytes")
    unit_rows: int = _field(
        DEFAULT_UNIT_ROWS, "Rows per unit of a global step (intake, demographics): bounds a step's memory at any "
        "extract size.", unit="rows", **_whole(1))
    temp_dir: str = _field("", "Where each worker's DuckDB temp folder (spill) is made: a local folder.",
                           TEXT_VALID, shown="the system temp folder")
    executor: Literal["multiprocess", "in_process"] = _field(
        "in_process", "How a run executes its steps: one after another in the run's process (in_process) or each "
        "in its own process (multiprocess).", _choice(*EXECUTORS), when=LOAD)
    mp_start_method: Literal["forkserver", "spawn"] = _field(
        "forkserver", "multiprocess executor: how step processes start (forkserver, modules preloaded once; "
        "spawn, a fresh interpreter per step).", _choice(*START_METHODS), when=LOAD)
    partitions_per_run: int | None = _field(
        None, "Partitions a backfill puts in one run.", unit="partitions", when=LOAD,
        shown="ceil(partitions / workers)", **_whole(1))
    profile: bool = _field(
        False, "1: every step keeps DuckDB's JSON profile of each query beside the partition's checkpoint "
        "(`_profile.json`).", FLAG_VALID)
    # -- S3 ------------------------------------------------------------------------------------------------
    s3_connect_timeout: int = _field(5, "S3: connect timeout per attempt.", unit="seconds", **_whole(1))
    s3_read_timeout: int = _field(8, "S3: read timeout per attempt.", unit="seconds", **_whole(1))
    s3_attempts: int = _field(2, "S3: attempts per request (boto3 and DuckDB's httpfs alike).", unit="attempts",
                              **_whole(1))
    # -- QA guards -----------------------------------------------------------------------------------------
    max_quarantine_rate: float = _field(
        0.05, "Guard quarantine_rate: the largest share of rows quarantined for one reason.", unit="share",
        **_share())
    max_null_rate_jump: float = _field(
        0.10, "Guard null_rate_jump: the largest rise of a monitored column's NULL share against the partition's "
        "previous materialization.", unit="share", **_share())
    max_event_drop: float = _field(
        0.50, "Guard event_count_drop: the largest fall of an event type's count against the partition's previous "
        "materialization.", unit="share", **_share())
    guard_min_rows: int = _field(10, "Counts below this are too small to judge a guard's rate by.", unit="rows",
                                 **_whole(0))
    guard_alpha: float = _field(
        0.001, "Rate guards: a count breaches a rate only when a one-sided exact binomial test says it is "
        "significantly above it, P(X >= count | rows, rate) below this (a small partition's chance excess is no "
        "breach).", unit="probability", **_share())
    payer_rate_margin: float = _field(
        0.02, "Guard payer_shift: how far above the other payers' pooled rate (or its own previous rate) a payer's "
        "quarantine or code-reject rate may be.", unit="share", **_share())
    max_payer_drop: float = _field(
        0.50, "Guard payer_shift: the largest fall of a payer's rows in a silver partition against the "
        "partition's previous materialization.", unit="share", **_share())
    # -- plausibility bounds (silver quarantines a row beyond one as implausible_<what>; README "Bad input") -
    max_quantity: float = _field(
        10000, "Silver pharmacy: the largest quantity dispensed on one fill (units, mL, g); above it, or below 0, "
        "the fill is implausible_quantity. NCPDP's field holds up to 9,999,999.999, but a 90-day supply at 4 a "
        "day is 360 (DE-SynPUF's largest). 0 is kept (not recorded): no MME.", unit="units", **_number(1))
    max_days_supply: int = _field(
        365, "Silver pharmacy: the longest days supply of one fill; above it, or below 0, the fill is "
        "implausible_days_supply. A fill covers at most a year (NCPDP's field has 3 digits; plans cap at 90-102 "
        "days). 0 is kept (not recorded): no MME.", unit="days", **_whole(1))
    max_mme_per_day: float = _field(
        5000, "Silver pharmacy: the largest MME/day of an opioid fill (by the opioid NDC reference, as events "
        "compute it); above it the fill is implausible_mme_per_day and reaches no MME sum. CDC's 2022 guideline "
        "calls 90 MME/day high; 5,000 leaves room for palliative extremes and catches data errors (the issue's "
        "probe: 1e9 tablets, 277,777,778 MME/day).", unit="MME/day", **_number(1))
    max_paid_amount: float = _field(
        10_000_000, "Silver medical and pharmacy: the largest paid amount of one line, either sign (a reversal is "
        "negative); beyond it the line is implausible_paid_amount. The costliest single drugs (gene therapies) "
        "are 2-4.25 million.", unit="currency per line", **_number(1))
    check_targets: bool = _field(
        True, "Checks: name the materialization each verdict judged, so the Checks tab's partition grid shows it. "
        "Uses a private Dagster name (pgx_dagster/ops/dagster_private.py): off, the grid shows the verdicts as "
        "missing; they stay in the runs' events, the check history and pgx status.", FLAG_VALID)
    # -- commands ------------------------------------------------------------------------------------------
    demo_members: int = _field(DEFAULT_DEMO_MEMBERS, "`pgx demo`: persons in the synthetic extract.",
                               unit="persons", when=COMMAND, **_whole(1))
    daemon_tick_seconds: float = _field(
        0.5, "`pgx daemon`: the loop of its daemons and run queue (Dagster's own is 30 s).", unit="seconds",
        when=COMMAND, **_number(0.001))
    debug: bool = _field(False, "`pgx`: 1 shows the Python traceback of an error instead of its one line.",
                         FLAG_VALID, when=COMMAND)
    # fmt: on

    # where the values came from (load() records them): the environment read, the file and its keys
    _environ: dict[str, str] = PrivateAttr(default_factory=dict)
    _file: Path | None = PrivateAttr(default=None)
    _file_keys: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @field_validator("*", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _years_in_order(self) -> Settings:
        if self.min_year > self.max_year:
            raise SettingError(f"PGX_MIN_YEAR={self.min_year} is after PGX_MAX_YEAR={self.max_year}: expected "
                               "PGX_MIN_YEAR <= PGX_MAX_YEAR")  # fmt: skip
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """init > environment > the deployment's file > defaults (no .env, no secrets folder)."""
        environ, toml = _BUILDING.get() or (os.environ, None)
        if toml is None:
            toml = _toml_source(settings_cls, config_path(environ))
        return init_settings, _MappingEnvSource(settings_cls, environ), toml

    # ---- values computed when read ----------------------------------------------------------------------
    def env_name(self, field: str) -> str:
        return env_name(field)

    def workers(self) -> int:
        """The legacy pipeline's worker count, min(48, cores x 1.5), unless PGX_MAX_WORKERS overrides it."""
        return self.max_workers or max(1, min(48, int((os.cpu_count() or 1) * 1.5)))

    def years(self) -> list[int]:
        return list(range(self.min_year, self.max_year + 1))

    # ---- where each value came from ------------------------------------------------------------------------
    def origin(self, field: str) -> str:
        """'environment', the file's path, 'init' or 'default'."""
        if (self._environ.get(env_name(field)) or "").strip():
            return "environment"
        if field in self._file_keys and self._file is not None:
            return str(_shown_path(self._file))
        return "init" if field in self.model_fields_set else "default"

    def explicit(self) -> dict[str, str]:
        """Every field set explicitly (environment or file), as the PGX_ variable and its text."""
        out = {}
        for field in type(self).model_fields:
            if field != "config_file" and self.origin(field) not in ("default",):
                raw = (self._environ.get(env_name(field)) or "").strip()
                out[env_name(field)] = raw if self.origin(field) == "environment" else env_text(getattr(self, field))
        return out

    def check_paths(self) -> None:
        """A local path given (not a default) must exist, for settings that say so: checked when the definitions
        load and by `pgx materialize`, not by `pgx validate-inputs`, which reports it in its listing."""
        for field, info in type(self).model_fields.items():
            extra = info.json_schema_extra or {}
            value = getattr(self, field)
            if self.origin(field) == "default":  # only a path given must exist (data/raw may not, yet)
                continue
            if field == "cohort_dir":
                if not (REPO_ROOT / value).is_dir():
                    raise SettingError(f"PGX_COHORT_DIR={value!r}: no such folder {REPO_ROOT / value}; expected "
                                       f"{FOLDER_VALID}")  # fmt: skip
            elif extra.get("must_exist") and value:
                for part in [p.strip() for p in value.split(",")]:
                    if not part.startswith("s3://") and not glob.has_magic(part) and not Path(part).exists():
                        raise SettingError(f"{env_name(field)}={value!r}: {part} does not exist; expected "
                                           f"{extra['valid']}")  # fmt: skip


class _MappingEnvSource(EnvSettingsSource):
    """The environment source over a given mapping (os.environ, or the one `validate(environ)` checks)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self._mapping = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # as EnvSettingsSource reads os.environ: names case-insensitive (PREFIX included), empty values unset
        empty = ("",) if self.env_ignore_empty else ()
        return {k.lower(): v for k, v in self._mapping.items() if v is not None and v not in empty}


# The environment and file source of the Settings being built by load().
_BUILDING: ContextVar[tuple[Mapping[str, str], PydanticBaseSettingsSource] | None] = ContextVar(
    "_BUILDING", default=None
)


def env_name(field: str) -> str:
    """raw_root -> PGX_RAW_ROOT."""
    return PREFIX + field.upper()


def field_name(env: str) -> str:
    """PGX_RAW_ROOT -> raw_root."""
    return env.removeprefix(PREFIX).lower()


FIELDS: tuple[str, ...] = tuple(Settings.model_fields)
ENV_NAMES: dict[str, str] = {env_name(f): f for f in FIELDS}


def env_text(value: Any) -> str:
    """A field's value as an environment variable would give it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else str(value)


def _shown_path(path: Path) -> Path:
    return path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path


def config_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The deployment's file: PGX_CONFIG_FILE (relative: to the repository; `none`: no file), else
    config/local.toml when it exists, else none. A file named that does not exist is an error."""
    env = os.environ if environ is None else environ
    named = (env.get("PGX_CONFIG_FILE") or "").strip()
    if named.lower() == NO_FILE:
        return None
    if not named:
        default = REPO_ROOT / DEFAULT_CONFIG_FILE
        return default if default.is_file() else None
    path = REPO_ROOT / named
    if not path.is_file():
        raise SettingError(f"PGX_CONFIG_FILE={named!r}: no such file {path}; expected a TOML file (relative: to the "
                           "repository), or none")  # fmt: skip
    return path


def _toml_source(settings_cls: type[BaseSettings], path: Path | None) -> PydanticBaseSettingsSource:
    try:
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    except tomllib.TOMLDecodeError as error:
        raise SettingError(f"{_shown_path(path)}: not valid TOML: {error}") from None  # type: ignore[arg-type]


def _check_unknown(environ: Mapping[str, str], path: Path | None, keys: set[str]) -> None:
    """An unknown PGX_ variable, or key of the file, is an error naming the closest setting."""
    for name in sorted(k for k in environ if k.startswith(PREFIX)):
        if name not in ENV_NAMES and name not in TOOLING:
            near = closest(name, ENV_NAMES, 0.0)
            raise SettingError(f"{name} is not a setting: did you mean {near}? (docs/configuration.md lists them)")
    for key in sorted(keys):
        if key == "config_file":
            raise SettingError(f"{_shown_path(path)}: config_file is set by the environment only (PGX_CONFIG_FILE)")  # type: ignore[arg-type]
        if key not in FIELDS:
            near = closest(field_name(key) if key.upper().startswith(PREFIX) else key, FIELDS, 0.0)
            raise SettingError(f"{_shown_path(path)}: {key} is not a setting: did you mean {near}? "  # type: ignore[arg-type]
                               "(docs/configuration.md lists them)")  # fmt: skip


def _one_line(error: ValidationError, environ: Mapping[str, str], path: Path | None) -> SettingError:
    """pydantic's first error as one line: the setting (and where it was set), its value, the valid ones."""
    first = error.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, SettingError):
        return cause
    field = str(first["loc"][0]) if first["loc"] else ""
    info = Settings.model_fields.get(field)
    if info is None:
        return SettingError(f"{field or 'settings'}: {first['msg']}")
    extra = info.json_schema_extra or {}
    raw = first.get("input")
    hint = str(cause) if isinstance(cause, _Hint) else ""
    choices = get_args(info.annotation)
    if isinstance(raw, str) and choices and all(isinstance(c, str) for c in choices):
        hint = did_you_mean(raw, choices, 0.5)
    where = env_name(field) if (environ.get(env_name(field)) or "").strip() or path is None else (
        f"{_shown_path(path)}: {field}")  # fmt: skip
    return SettingError(f"{where}={raw!r} is not valid: expected {extra.get('valid', '')}{hint}")


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from `environ` (default os.environ) and the file it chooses, validated: a SettingError
    (one line) for the first bad value, unknown PGX_ variable or unknown key of the file."""
    env = dict(os.environ if environ is None else environ)
    path = config_path(env)
    toml = _toml_source(Settings, path)
    keys = set(getattr(toml, "toml_data", {}) or {})
    _check_unknown(env, path, keys)
    token = _BUILDING.set((env, toml))
    try:
        settings = Settings()
    except ValidationError as error:
        raise _one_line(error, env, path) from None
    finally:
        _BUILDING.reset(token)
    settings._environ = {k: v for k, v in env.items() if k.upper().startswith(PREFIX)}
    settings._file, settings._file_keys = path, frozenset(keys)
    return settings


# ---- the object every reader goes through ------------------------------------------------------------------
_cached: tuple[tuple, Settings] | None = None


def fingerprint(environ: Mapping[str, str] | None = None) -> tuple:
    """What the settings are built from: every PGX_ variable, and the file's path, time and size."""
    env = os.environ if environ is None else environ
    variables = tuple(sorted((k, v) for k, v in env.items() if k.upper().startswith(PREFIX)))
    try:
        path = config_path(env)
    except SettingError:
        return (variables, None)
    stat = path.stat() if path is not None else None
    return (variables, str(path), stat.st_mtime_ns, stat.st_size) if stat else (variables, None)


def get_settings() -> Settings:
    """The settings of this process, built again when a PGX_ variable or the file has changed since (so a
    test's monkeypatch.setenv is seen by the next read)."""
    global _cached
    key = fingerprint()
    if _cached is None or _cached[0] != key:
        _cached = (key, load())
    return _cached[1]


def reset() -> None:
    """Forget the cached settings (the next get_settings() builds them again)."""
    global _cached
    _cached = None


def task_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings as environment variables for a process that must have the same ones (an ECS task): every
    field set explicitly (environment or file) as PGX_<FIELD>, and PGX_CONFIG_FILE=none (the values carry the
    file's, and the task's image may hold another file)."""
    settings = get_settings() if environ is None else load(environ)
    return {**settings.explicit(), "PGX_CONFIG_FILE": NO_FILE}


def validate(environ: Mapping[str, str] | None = None, check_paths: bool = True) -> list[str]:
    """Every setting checked at once: raises a SettingError (one line) for the first bad value, unknown PGX_
    variable or unknown key of the file; `check_paths`: a local path given must exist. Returns the warnings
    (none today: every unknown name is an error)."""
    settings = load(environ)
    if check_paths:
        settings.check_paths()
    return []


def check_environment(environ=None, check_paths: bool = True) -> None:
    """validate(), its warnings issued as Python warnings."""
    for note in validate(environ, check_paths):
        warnings.warn(note, stacklevel=2)


def value(name: str, default: Any = None, environ: Mapping[str, str] | None = None) -> Any:
    """A setting's value by its variable (`value("PGX_SHARDS")`), or `default` when it has none (a default
    computed when read: PGX_MAX_WORKERS, PGX_PARTITIONS_PER_RUN, PGX_EXTRACT_DATE)."""
    settings = get_settings() if environ is None else load(environ)
    got = getattr(settings, ENV_NAMES[name])
    return default if got is None or got == "" else got


def debug() -> bool:
    """PGX_DEBUG, read even when another setting is bad (`pgx` shows the traceback of that error too)."""
    try:
        return get_settings().debug
    except SettingError:
        raw = (os.environ.get("PGX_DEBUG") or "").strip()
        try:
            return bool(raw) and TypeAdapter(bool).validate_python(raw)
        except ValidationError:
            return False


def describe(settings: Settings | None = None) -> str:
    """`pgx config`: every setting's effective value and where it came from."""
    settings = settings or get_settings()
    path = settings._file
    chosen = "set" if settings.origin("config_file") == "environment" else "unset: config/local.toml if it exists"
    lines = [f"Configuration file: {_shown_path(path) if path else 'none'} (PGX_CONFIG_FILE {chosen})"]
    rows = []
    for field, info in Settings.model_fields.items():
        got = getattr(settings, field)
        shown = (info.json_schema_extra or {}).get("shown")
        if field == "max_workers":
            text = f"{settings.workers()}" + (f" ({shown})" if got is None else "")
        else:
            text = env_text(got) if got not in (None, "") else (shown or "unset")
        rows.append((env_name(field), text, settings.origin(field)))
    width = max(len(name) for name, _, _ in rows)
    wide = max(len(text) for _, text, _ in rows if len(text) <= 40)
    lines += [f"{name:<{width}}  {text:<{wide}}  {origin}" for name, text, origin in rows]
    return "\n".join(lines)


# ---- the readers' helpers: each reads the object when called -----------------------------------------------
def earliest_service_date() -> date:
    """Dates before this are implausible (PGX_EARLIEST_SERVICE_DATE)."""
    return get_settings().earliest_service_date


def plausibility_bounds() -> dict[str, float]:
    """The bounds silver quarantines implausible magnitudes by, as the DuckDB variables its SQL reads."""
    s = get_settings()
    return {
        "max_quantity": float(s.max_quantity),
        "max_days_supply": float(s.max_days_supply),
        "max_mme_per_day": float(s.max_mme_per_day),
        "max_paid_amount": float(s.max_paid_amount),
    }


def event_years() -> list[int]:
    """Event years of the partitions: PGX_MIN_YEAR..PGX_MAX_YEAR (default 2016-2020)."""
    return get_settings().years()


def demo_members() -> int:
    return get_settings().demo_members


def max_workers() -> int:
    """The legacy pipeline's worker count, min(48, cores x 1.5), unless PGX_MAX_WORKERS overrides it."""
    return get_settings().workers()


def memory_per_worker() -> str:
    """A worker's memory budget (PGX_MEMORY_PER_WORKER) as written (DuckDB reads the text)."""
    return get_settings().memory_per_worker


def raw_root() -> str:
    return get_settings().raw_root


def lake_root() -> str:
    return get_settings().lake_root


def cohort_dir() -> Path:
    """The cohort definitions' folder (PGX_COHORT_DIR, default cohorts/ in the repository)."""
    return REPO_ROOT / get_settings().cohort_dir


def raw_format() -> str:
    return get_settings().raw_format


def executor_kind() -> str:
    """How a run executes its steps (PGX_EXECUTOR): one after another in the run's process (default:
    runs are the unit of parallelism, see partitions.partitions_per_run) or each in its own process."""
    return get_settings().executor


def mp_start_method() -> str:
    """How step processes start: forkserver (default, modules preloaded once) or spawn (PGX_MP_START_METHOD)."""
    return get_settings().mp_start_method


def daemon_tick_seconds() -> float:
    """Loop of `pgx daemon` and of its run queue (PGX_DAEMON_TICK_SECONDS, default 0.5; Dagster's own are 30
    and whole seconds). Dagster's daemons wait in steps of 0.5 s, so a shorter loop changes nothing."""
    return float(get_settings().daemon_tick_seconds)


def shards() -> int:
    """How many shards (partitions) intake's claims are split into (PGX_SHARDS, default 1): each shard is
    its own run, so shards run in parallel and on ECS as tasks of the same size. A definition-time value like
    the event years: changing it changes the partition keys, and intake must then be materialized again for
    every shard (silver reads the configured shards only)."""
    return get_settings().shards


# S3: every request fails within S3_DEADLINE_S when the endpoint does not answer - connect and read
# timeouts per attempt, and the attempts (boto3 and DuckDB's httpfs alike).
def s3_timeouts() -> tuple[float, float, int]:
    """(connect timeout s, read timeout s, attempts): PGX_S3_CONNECT_TIMEOUT (default 5),
    PGX_S3_READ_TIMEOUT (default 8), PGX_S3_ATTEMPTS (default 2): at most 2 x (5 + 8) = 26 s."""
    s = get_settings()
    return float(s.s3_connect_timeout), float(s.s3_read_timeout), s.s3_attempts


def profiling() -> bool:
    """PGX_PROFILE=1: every step keeps DuckDB's JSON profile of each query it runs, written beside the
    partition's checkpoint as `_profile.json` and linked from the materialization (the legacy pipeline's
    "profile first runs: DuckDB profiling in JSON mode")."""
    return get_settings().profile


# ---- the instance ---------------------------------------------------------------------------------------
# Where a Dagster command without DAGSTER_HOME (`dagster dev`, `dagster asset materialize`) keeps its temporary
# instance, deleted when the command exits.
DAGSTER_TEMP_HOME_PREFIX = ".tmp_dagster_home_"


def instance_warning(is_ephemeral: bool, root: str | None) -> str | None:
    """What to tell a run recorded where nobody will find it again: an in-memory (ephemeral) instance, or
    the temporary one a Dagster command (`dagster dev`) makes without DAGSTER_HOME and deletes when it exits."""
    if is_ephemeral:
        return ("this run is recorded in a throwaway in-memory Dagster instance: the lake is written, but the run "
                "and its check verdicts will not appear in the UI or `pgx status`. Set DAGSTER_HOME to a folder "
                "(the Makefile uses .dagster_home) to keep them.")  # fmt: skip
    if root and Path(root).name.startswith(DAGSTER_TEMP_HOME_PREFIX):
        return (f"this run is recorded in a temporary Dagster instance, {root}, which the command that made it "
                "(`dagster dev` without DAGSTER_HOME) deletes when it exits: set DAGSTER_HOME to a folder (`make dev` "
                "uses .dagster_home) to keep the runs and check verdicts.")  # fmt: skip
    return None

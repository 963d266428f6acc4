"""Every environment variable the project reads, in one place: the registry `SETTINGS` (name, default,
unit, meaning, valid values) that every reader goes through, and `validate()`, which checks them all
when the definitions load (and before any `pgx` command starts anything), so a bad value is one line
naming the setting, its value and the valid ones - never a step that fails and is retried.

Definition-time values (the partition years, the shards, the executor) are read here once; run-time
values (lake roots, memory, extract date) become Dagster resources built in `resources.py` from
`EnvVar`s. `python -m pgx_dagster.settings` writes docs/configuration.md from the registry.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from dagster import Failure

REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = REPO_ROOT / "sql"
COHORT_DIR = REPO_ROOT / "cohorts"

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
EXECUTORS = ("multiprocess", "in_process")
START_METHODS = ("forkserver", "spawn")


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


# What kind of value a setting takes: how it is checked and how the reference page names it.
WHOLE, NUMBER, SHARE, SIZE, YEAR, DATE, CHOICE, FLAG, FOLDERS, FILE, PATH, URI, TEXT = (
    "whole number",
    "number",
    "share",
    "size",
    "year",
    "date",
    "choice",
    "flag",
    "folders",
    "file",
    "path",
    "uri",
    "text",
)
FOLDER = "folder"  # a local folder, relative to the repository
URL = "url"  # an http(s) URL  # fmt: skip
FLAGS = ("1", "0", "true", "false", "yes", "no")
# When a setting is read: when the definitions load (it shapes the partitions, checks or executor: a change
# needs the code location reloaded), when a run's step reads it, or only by a `pgx` command or a tool.
LOAD, RUN, COMMAND, TOOLING = "definitions load", "run", "pgx command", "tests / benchmarks / deployment"


@dataclass(frozen=True)
class Setting:
    name: str
    default: str  # as the reference page shows it; "" = unset
    meaning: str
    kind: str = TEXT
    unit: str = ""
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    when: str = RUN
    # a local path given must exist (checked when the definitions load and by `pgx materialize`)
    must_exist: bool = False

    def raw(self, environ=None) -> str:
        return ((os.environ if environ is None else environ).get(self.name) or "").strip()

    def valid(self) -> str:
        """The valid values, in words."""
        if self.kind == CHOICE:
            return "one of " + ", ".join(self.choices)
        if self.kind == FLAG:
            return "1 / true / yes, or 0 / false / no"
        if self.kind in (WHOLE, NUMBER, YEAR):
            what = {WHOLE: "a whole number", NUMBER: "a number", YEAR: "a year"}[self.kind]
            if self.low is not None and self.high is not None:
                return f"{what} from {self.low:g} to {self.high:g}"
            return f"{what} of at least {self.low:g}" if self.low is not None else what
        if self.kind == SHARE:
            return "a share from 0 to 1, e.g. 0.05"
        if self.kind == SIZE:
            return "a positive size such as 2GB, 1500MB or 2GiB"
        if self.kind == DATE:
            return "a date YYYY-MM-DD"
        if self.kind == FOLDERS:
            return "a folder or s3://bucket/prefix (several, comma-separated, for the tuva and desynpuf formats)"
        if self.kind == URI:
            return "a folder or s3://bucket/prefix"
        if self.kind == URL:
            return "an http:// or https:// URL"
        if self.kind == FOLDER:
            return "a local folder (relative: to the repository)"
        if self.kind in (FILE, PATH):
            return "a file, glob or folder, local or s3://bucket/key" if self.kind == PATH else "a file, local or s3://"
        return "any text"

    def _bad(self, raw: str, hint: str = "") -> SettingError:
        return SettingError(f"{self.name}={raw!r} is not valid: expected {self.valid()}{hint}")

    def parse(self, environ=None, check_paths: bool = True):
        """The setting's value (its default when unset), or a SettingError naming it, its value and the valid
        ones. `check_paths`: a local path given must exist (for settings that say so)."""
        raw = self.raw(environ)
        if not raw:
            return None
        if self.kind == CHOICE:
            if raw not in self.choices:
                raise self._bad(raw, did_you_mean(raw, self.choices, 0.5))
            return raw
        if self.kind == FLAG:
            if raw.lower() not in FLAGS:
                raise self._bad(raw)
            return raw.lower() in ("1", "true", "yes")
        if self.kind in (WHOLE, YEAR, NUMBER, SHARE):
            try:
                value = float(raw) if self.kind in (NUMBER, SHARE) else int(raw)
            except ValueError:
                raise self._bad(raw) from None
            low, high = (0, 1) if self.kind == SHARE else (self.low, self.high)
            if (low is not None and value < low) or (high is not None and value > high) or value != value:
                raise self._bad(raw)
            return value
        if self.kind == SIZE:
            return parse_bytes(raw, self.name)
        if self.kind == DATE:
            try:
                return date.fromisoformat(raw)
            except ValueError:
                raise self._bad(raw) from None
        if self.kind == URL:
            if not re.fullmatch(r"https?://\S+", raw):
                raise self._bad(raw)
            return raw
        if self.kind == FOLDER:
            if check_paths and not (REPO_ROOT / raw).is_dir():
                raise SettingError(f"{self.name}={raw!r}: no such folder {REPO_ROOT / raw}; expected {self.valid()}")
            return raw
        if self.kind in (FOLDERS, URI, FILE, PATH):
            parts = [p.strip() for p in raw.split(",")] if self.kind == FOLDERS else [raw]
            for part in parts:
                bad_uri = part.lower().startswith("s3:") and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]+(/.*)?", part)
                if not part or bad_uri:
                    raise self._bad(raw, f" ({part!r} is not an s3://bucket/prefix URI)" if part else "")
                if check_paths and self.must_exist and not part.startswith("s3://") and not glob.has_magic(part):
                    if not Path(part).exists():
                        raise SettingError(f"{self.name}={raw!r}: {part} does not exist; expected {self.valid()}")
            return raw
        return raw


SETTINGS: dict[str, Setting] = {s.name: s for s in [
    # -- the data --------------------------------------------------------------------------------------------
    Setting("PGX_RAW_ROOT", DEFAULT_RAW_ROOT, "Where the raw extract is read: a folder or s3://bucket/prefix; the "
            "tuva, desynpuf and apcd formats take several, comma-separated. A local folder given must exist.",
            FOLDERS, must_exist=True),
    Setting("PGX_RAW_FORMAT", "pgx", "The layout of the raw extract: pgx (our Parquet layout, and the legacy "
            "pipeline's), tuva (the Tuva Project input layer), desynpuf (CMS DE-SynPUF CSV files) or apcd (a state "
            "APCD release: MC/PC/ME/PE files by APCD element code).", CHOICE,
            choices=("pgx", "tuva", "desynpuf", "apcd")),
    Setting("PGX_RAW_DELIMITER", "auto", "apcd format: the delimiter of its text files: auto (detected per file "
            "from its first line), pipe, comma or tab.", CHOICE, choices=("auto", "pipe", "comma", "tab")),
    Setting("PGX_APCD_LAYOUT", "", "apcd format: a folder with the column layout of files that come without a "
            "header: mc_columns.csv, pc_columns.csv, me_columns.csv, pe_columns.csv, each with columns `column` "
            "and `element`, one row per field in the order of the file's fields.", PATH, must_exist=True),
    Setting("PGX_APCD_ELEMENTS", "", "apcd format: which APCD elements the pipeline reads for what, when a "
            "state numbers them differently (the layout of sql/formats/apcd/elements.csv); unset: that file.",
            FILE, must_exist=True),
    Setting("PGX_LAKE_ROOT", DEFAULT_LAKE_ROOT, "Where every dataset is written: a folder or s3://bucket/prefix.",
            URI),
    Setting("PGX_RAW_MEDICAL", "", "pgx and apcd formats: the exact path or glob of the medical claims (apcd: "
            "of the MC files, or their folder), used as given instead of the folders under PGX_RAW_ROOT.", PATH,
            must_exist=True),
    Setting("PGX_RAW_PHARMACY", "", "pgx and apcd formats: the exact path or glob of the pharmacy claims (apcd: "
            "of the PC files, or their folder).", PATH, must_exist=True),
    Setting("PGX_RAW_ELIGIBILITY", "", "pgx and apcd formats: the exact path or glob of the member eligibility "
            "(apcd: of the ME files, or their folder).", PATH, must_exist=True),
    Setting("PGX_RAW_LINKAGE", "", "pgx format: the exact path or glob of the member linkage (person) table.",
            PATH, must_exist=True),
    Setting("PGX_EXTRACT_DATE", "today", "The date the raw extract was cut: service dates after it are "
            "impossible, open enrolment spans run to it.", DATE),
    Setting("PGX_EARLIEST_SERVICE_DATE", "1990-01-01", "Service and fill dates before it are implausible (sentinels "
            "such as 1900-01-01 or 1970-01-01): the line is quarantined as implausible_<date column>, and its claim "
            "is placed by its other lines. No APCD holds claims from before 1990.", DATE),
    Setting("PGX_OPIOID_NDC_FILE", "", "The opioid NDC / MME conversion file (layout of "
            "sql/codesets/opioid_ndc.csv, e.g. built by `pgx build-opioid-ndc` from a newer CDC list, or by "
            "`pgx build-ndc-map` from the FDA NDC Directory); unset: CDC's 2017 list as shipped.",
            FILE, must_exist=True),
    Setting("PGX_NDC_INGREDIENT_FILE", "", "The NDC -> ingredient map of the non-opioid drugs with CPIC guidance "
            "(layout of sql/codesets/ndc_ingredient.csv, built by `pgx build-ndc-map`); unset: the shipped map, "
            "whose NDCs are placeholders only the synthetic data uses.", FILE, must_exist=True),
    Setting("PGX_COHORT_DIR", "cohorts", "The folder of the cohort definitions, one TOML file per cohort (relative: "
            "to the repository).", FOLDER, when=LOAD),
    Setting("PGX_GENOTYPES", "", "Genotypes (person_id, gene, phenotype in CPIC terms): a CSV or Parquet file, a "
            "glob or a folder; unset: <PGX_RAW_ROOT>/genotypes/ when it exists, else none.", PATH, must_exist=True),
    Setting("PGX_LAKE_URL", "", "The base URL that serves the lake root (a static server, CloudFront, an S3 website "
            "endpoint): the UI's links to reports and exports; unset: presigned URLs on S3, the path as text locally.",
            URL),
    Setting("PGX_PRESIGN_SECONDS", str(7 * 24 * 3600), "How long a presigned link to a lake file on S3 is valid "
            "(7 days is the most S3 allows).", WHOLE, "seconds", low=1, high=7 * 24 * 3600),
    # -- the partitions --------------------------------------------------------------------------------------
    Setting("PGX_MIN_YEAR", str(DEFAULT_MIN_YEAR), "First event year of the partitions.", YEAR, "year",
            low=1900, high=2100, when=LOAD),
    Setting("PGX_MAX_YEAR", str(DEFAULT_MAX_YEAR), "Last event year of the partitions (not before PGX_MIN_YEAR).",
            YEAR, "year", low=1900, high=2100, when=LOAD),
    Setting("PGX_SHARDS", "1", "Shards (partitions of claims_intake, person_facts, member_demographics) the "
            "whole-extract work is split into, each its own run; a change needs intake materialized again.",
            WHOLE, "shards", low=1, high=MAX_SHARDS, when=LOAD),
    # -- execution -------------------------------------------------------------------------------------------
    Setting("PGX_MAX_WORKERS", "min(48, cores x 1.5)", "Workers: concurrent step processes (multiprocess "
            "executor) and the runs a backfill is split for.", WHOLE, "workers", low=1, when=LOAD),
    Setting("PGX_MEMORY_PER_WORKER", DEFAULT_MEMORY_PER_WORKER, "A worker's memory budget (its process's peak "
            "RSS); DuckDB's memory_limit is this less what the process holds beside it.", SIZE, "bytes"),
    Setting("PGX_UNIT_ROWS", str(DEFAULT_UNIT_ROWS), "Rows per unit of a global step (intake, demographics): "
            "bounds a step's memory at any extract size.", WHOLE, "rows", low=1),
    Setting("PGX_TEMP_DIR", "the system temp folder", "Where each worker's DuckDB temp folder (spill) is made: a "
            "local folder.", TEXT),
    Setting("PGX_EXECUTOR", "in_process", "How a run executes its steps: one after another in the run's process "
            "(in_process) or each in its own process (multiprocess).", CHOICE, choices=EXECUTORS, when=LOAD),
    Setting("PGX_MP_START_METHOD", "forkserver", "multiprocess executor: how step processes start (forkserver, "
            "modules preloaded once; spawn, a fresh interpreter per step).", CHOICE, choices=START_METHODS,
            when=LOAD),
    Setting("PGX_PARTITIONS_PER_RUN", "ceil(partitions / workers)", "Partitions a backfill puts in one run.",
            WHOLE, "partitions", low=1, when=LOAD),
    Setting("PGX_PROFILE", "0", "1: every step keeps DuckDB's JSON profile of each query beside the partition's "
            "checkpoint (`_profile.json`).", FLAG),
    # -- S3 --------------------------------------------------------------------------------------------------
    Setting("PGX_S3_CONNECT_TIMEOUT", "5", "S3: connect timeout per attempt.", WHOLE, "seconds", low=1),
    Setting("PGX_S3_READ_TIMEOUT", "8", "S3: read timeout per attempt.", WHOLE, "seconds", low=1),
    Setting("PGX_S3_ATTEMPTS", "2", "S3: attempts per request (boto3 and DuckDB's httpfs alike).", WHOLE,
            "attempts", low=1),
    # -- QA guards -------------------------------------------------------------------------------------------
    Setting("PGX_MAX_QUARANTINE_RATE", "0.05", "Guard quarantine_rate: the largest share of rows quarantined for "
            "one reason.", SHARE, "share"),
    Setting("PGX_MAX_NULL_RATE_JUMP", "0.10", "Guard null_rate_jump: the largest rise of a monitored column's "
            "NULL share against the partition's previous materialization.", SHARE, "share"),
    Setting("PGX_MAX_EVENT_DROP", "0.50", "Guard event_count_drop: the largest fall of an event type's count "
            "against the partition's previous materialization.", SHARE, "share"),
    Setting("PGX_GUARD_MIN_ROWS", "10", "Counts below this are too small to judge a guard's rate by.", WHOLE,
            "rows", low=0),
    Setting("PGX_GUARD_ALPHA", "0.001", "Rate guards: a count breaches a rate only when a one-sided exact binomial "
            "test says it is significantly above it, P(X >= count | rows, rate) below this (a small partition's "
            "chance excess is no breach).", SHARE, "probability"),
    Setting("PGX_PAYER_RATE_MARGIN", "0.02", "Guard payer_shift: how far above the other payers' pooled rate (or its "
            "own previous rate) a payer's quarantine or code-reject rate may be.", SHARE, "share"),
    Setting("PGX_MAX_PAYER_DROP", "0.50", "Guard payer_shift: the largest fall of a payer's rows in a silver "
            "partition against the partition's previous materialization.", SHARE, "share"),
    # -- plausibility bounds (silver quarantines a row beyond one as implausible_<what>; README "Bad input") ---
    Setting("PGX_MAX_QUANTITY", "10000", "Silver pharmacy: the largest quantity dispensed on one fill (units, "
            "mL, g); above it, or below 0, the fill is implausible_quantity. NCPDP's field holds up to 9,999,999.999, "
            "but a 90-day supply at 4 a day is 360 (DE-SynPUF's largest). 0 is kept (not recorded): no MME.",
            NUMBER, "units", low=1),
    Setting("PGX_MAX_DAYS_SUPPLY", "365", "Silver pharmacy: the longest days supply of one fill; above it, or "
            "below 0, the fill is implausible_days_supply. A fill covers at most a year (NCPDP's field has 3 "
            "digits; plans cap at 90-102 days). 0 is kept (not recorded): no MME.", WHOLE, "days", low=1),
    Setting("PGX_MAX_MME_PER_DAY", "5000", "Silver pharmacy: the largest MME/day of an opioid fill (by the opioid "
            "NDC reference, as events compute it); above it the fill is implausible_mme_per_day and reaches no "
            "MME sum. CDC's 2022 guideline calls 90 MME/day high; 5,000 leaves room for palliative extremes and "
            "catches data errors (the issue's probe: 1e9 tablets, 277,777,778 MME/day).", NUMBER,
            "MME/day", low=1),
    Setting("PGX_MAX_PAID_AMOUNT", "10000000", "Silver medical and pharmacy: the largest paid amount of one "
            "line, either sign (a reversal is negative); beyond it the line is implausible_paid_amount. The "
            "costliest single drugs (gene therapies) are 2-4.25 million.", NUMBER, "currency per line", low=1),
    # -- commands --------------------------------------------------------------------------------------------
    Setting("PGX_DEMO_MEMBERS", str(DEFAULT_DEMO_MEMBERS), "`pgx demo`: persons in the synthetic extract.", WHOLE,
            "persons", low=1, when=COMMAND),
    Setting("PGX_DAEMON_TICK_SECONDS", "0.5", "`pgx daemon`: the loop of its daemons and run queue (Dagster's own "
            "is 30 s).", NUMBER, "seconds", low=0.001, when=COMMAND),
    Setting("PGX_DEBUG", "", "`pgx`: 1 shows the Python traceback of an error instead of its one line.", FLAG,
            when=COMMAND),
    # -- read by the tests, the benchmarks and the deployment, not by the package ------------------------------
    Setting("PGX_SAMPLE_DATA", "../shared/data", "Tests: the folder of the public sample extracts.", TEXT,
            when=TOOLING),
    Setting("PGX_FLOOR_MEMORY", "80% of RAM", "Benchmarks: the memory of the single-DuckDB floor.", TEXT,
            when=TOOLING),
    Setting("PGX_CODE_LOCATION_HOST", "", "deploy/workspace.yaml: the host of the code location server.", TEXT,
            when=TOOLING),
]}  # fmt: skip


def setting(name: str) -> Setting:
    return SETTINGS[name]


def value(name: str, default=None, environ=None):
    """A setting's value as its kind (int, float, bool, date, text), or `default` when unset."""
    parsed = SETTINGS[name].parse(environ, check_paths=False)
    return default if parsed is None else parsed


def validate(environ=None, check_paths: bool = True) -> list[str]:
    """Every setting checked at once: raises a SettingError (one line) for the first bad value, or for a PGX_
    variable that is a near miss of a setting's name (a typo would be silently ignored); returns warnings
    for other PGX_ variables no setting has."""
    env = os.environ if environ is None else environ
    for s in SETTINGS.values():
        s.parse(env, check_paths=check_paths)
    lo, hi = value("PGX_MIN_YEAR", DEFAULT_MIN_YEAR, env), value("PGX_MAX_YEAR", DEFAULT_MAX_YEAR, env)
    if lo > hi:
        raise SettingError(f"PGX_MIN_YEAR={lo} is after PGX_MAX_YEAR={hi}: expected PGX_MIN_YEAR <= PGX_MAX_YEAR")
    notes = []
    for name in sorted(k for k in env if k.startswith("PGX_") and k not in SETTINGS):
        near = closest(name, SETTINGS, 0.85)
        if near:
            raise SettingError(f"{name} is not a setting: did you mean {near}? (docs/configuration.md lists them)")
        hint = closest(name, SETTINGS)
        nearest = f" (the nearest is {hint})" if hint else ""
        notes.append(f"{name} is not a pgx setting and is ignored{nearest}; docs/configuration.md lists them")
    return notes


def check_environment(environ=None, check_paths: bool = True) -> None:
    """validate(), its warnings issued as Python warnings."""
    for note in validate(environ, check_paths):
        warnings.warn(note, stacklevel=2)


_BYTE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip
_BYTES = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_bytes(text: str, name: str = "PGX_MEMORY_PER_WORKER") -> int:
    """'2GB', '1.5 GB', '512MiB' as bytes, with DuckDB's units (GB = 10^9 bytes, GiB = 2^30)."""
    match = _BYTES.fullmatch(str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _BYTE_UNITS or float(match.group(1)) <= 0:
        raise SettingError(f"{name}={text!r} is not valid: expected a positive size such as 2GB, 1500MB or 2GiB")
    return int(float(match.group(1)) * _BYTE_UNITS[unit])


def earliest_service_date() -> date:
    """Dates before this are implausible (PGX_EARLIEST_SERVICE_DATE)."""
    return value("PGX_EARLIEST_SERVICE_DATE", date(1990, 1, 1))


def plausibility_bounds() -> dict[str, float]:
    """The bounds silver quarantines implausible magnitudes by, as the DuckDB variables its SQL reads."""
    bounds = {
        "max_quantity": "PGX_MAX_QUANTITY",
        "max_days_supply": "PGX_MAX_DAYS_SUPPLY",
        "max_mme_per_day": "PGX_MAX_MME_PER_DAY",
        "max_paid_amount": "PGX_MAX_PAID_AMOUNT",
    }
    # unset: the default the registry shows (one number for the page and the SQL)
    return {var: float(value(name, SETTINGS[name].default)) for var, name in bounds.items()}


def event_years() -> list[int]:
    """Event years of the partitions: PGX_MIN_YEAR..PGX_MAX_YEAR (default 2016-2020)."""
    lo = value("PGX_MIN_YEAR", DEFAULT_MIN_YEAR)
    hi = value("PGX_MAX_YEAR", DEFAULT_MAX_YEAR)
    if lo > hi:
        raise SettingError(f"PGX_MIN_YEAR={lo} is after PGX_MAX_YEAR={hi}: expected PGX_MIN_YEAR <= PGX_MAX_YEAR")
    return list(range(lo, hi + 1))


def demo_members() -> int:
    return value("PGX_DEMO_MEMBERS", DEFAULT_DEMO_MEMBERS)


def max_workers() -> int:
    """The legacy pipeline's worker count, min(48, cores x 1.5), unless PGX_MAX_WORKERS overrides it."""
    return value("PGX_MAX_WORKERS", max(1, min(48, int((os.cpu_count() or 1) * 1.5))))


def memory_per_worker() -> str:
    """A worker's memory budget (PGX_MEMORY_PER_WORKER) as written; resources.py passes it as an EnvVar."""
    return setting("PGX_MEMORY_PER_WORKER").raw() or DEFAULT_MEMORY_PER_WORKER


def raw_root() -> str:
    return setting("PGX_RAW_ROOT").raw() or DEFAULT_RAW_ROOT


def lake_root() -> str:
    return setting("PGX_LAKE_ROOT").raw() or DEFAULT_LAKE_ROOT


def cohort_dir() -> Path:
    """The cohort definitions' folder (PGX_COHORT_DIR, default cohorts/ in the repository)."""
    return REPO_ROOT / (setting("PGX_COHORT_DIR").raw() or COHORT_DIR)


def raw_format() -> str:
    return value("PGX_RAW_FORMAT", "pgx")


def executor_kind() -> str:
    """How a run executes its steps (PGX_EXECUTOR): one after another in the run's process (default:
    runs are the unit of parallelism, see partitions_per_run) or each in its own process."""
    return value("PGX_EXECUTOR", "in_process")


def mp_start_method() -> str:
    """How step processes start: forkserver (default, modules preloaded once) or spawn (PGX_MP_START_METHOD)."""
    return value("PGX_MP_START_METHOD", "forkserver")


def daemon_tick_seconds() -> float:
    """Loop of `pgx daemon` and of its run queue (PGX_DAEMON_TICK_SECONDS, default 0.5; Dagster's own are 30
    and whole seconds). Dagster's daemons wait in steps of 0.5 s, so a shorter loop changes nothing."""
    return float(value("PGX_DAEMON_TICK_SECONDS", 0.5))


def shards() -> int:
    """How many shards (partitions) intake's claims are split into (PGX_SHARDS, default 1): each shard is
    its own run, so shards run in parallel and on ECS as tasks of the same size. A definition-time value like
    the event years: changing it changes the partition keys, and intake must then be materialized again for
    every shard (silver reads the configured shards only)."""
    return value("PGX_SHARDS", 1)


def partitions_per_run() -> int:
    """Partitions a backfill puts in one run (PGX_PARTITIONS_PER_RUN). Default: enough runs to keep
    every worker busy and no more - ceil(partitions / workers) - since each run costs a process start
    (seconds) whatever its data. Dagster also splits a range by event year, so at most 7 count."""
    from pgx_dagster.partitions import AGE_BANDS

    default = -(-len(AGE_BANDS) * len(event_years()) // max_workers())
    return value("PGX_PARTITIONS_PER_RUN", max(1, default))


# S3: every request fails within S3_DEADLINE_S when the endpoint does not answer - connect and read
# timeouts per attempt, and the attempts (boto3 and DuckDB's httpfs alike).
def s3_timeouts() -> tuple[float, float, int]:
    """(connect timeout s, read timeout s, attempts): PGX_S3_CONNECT_TIMEOUT (default 5),
    PGX_S3_READ_TIMEOUT (default 8), PGX_S3_ATTEMPTS (default 2): at most 2 x (5 + 8) = 26 s."""
    return (
        float(value("PGX_S3_CONNECT_TIMEOUT", 5)),
        float(value("PGX_S3_READ_TIMEOUT", 8)),
        value("PGX_S3_ATTEMPTS", 2),
    )


def profiling() -> bool:
    """PGX_PROFILE=1: every step keeps DuckDB's JSON profile of each query it runs, written beside the
    partition's checkpoint as `_profile.json` and linked from the materialization (the legacy pipeline's
    "profile first runs: DuckDB profiling in JSON mode")."""
    return bool(value("PGX_PROFILE", False))


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


# ---- the reference page: docs/configuration.md ----------------------------------------------------------
CONFIGURATION_PAGE = REPO_ROOT / "docs" / "configuration.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default(s: Setting) -> str:
    """A value as code, a description (`the system temp folder`) as words, none as "unset"."""
    if not s.default:
        return "unset"
    return s.default if " " in s.default and "(" not in s.default else f"`{s.default}`"


def configuration_page() -> str:
    """docs/configuration.md, generated from SETTINGS (`python -m pgx_dagster.settings` writes it; a test keeps
    the committed page equal to it)."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from pgx_dagster/settings.py by `python -m pgx_dagster.settings`: edit the registry there, "
        "not this page. -->",
        "",
        "Every setting is an environment variable. They are all checked when the definitions load and before any "
        "`pgx` command starts anything: a bad value stops there with one line naming the setting, its value and "
        "the valid ones, and nothing runs. A `PGX_` variable that is one typo away from a setting is an error "
        "too; any other unknown `PGX_` variable is reported as a warning and ignored.",
        "",
        "*Read at*: **definitions load** - the setting shapes the partitions, checks or executor, so a change "
        "needs the code location reloaded (the UI's *Reload*, or a restart); **run** - read by each run's steps; "
        "**pgx command** - read by a `pgx` command only.",
        "",
        "Besides these, `DAGSTER_HOME` names the Dagster instance (runs, check verdicts, backfills): see "
        "*Without DAGSTER_HOME* below.",
        "",
        "| Setting | Default | Valid values | Unit | Read at | Meaning |",
        "|---|---|---|---|---|---|",
    ]
    for s in SETTINGS.values():
        if s.when == TOOLING:
            continue
        lines.append(f"| `{s.name}` | {_default(s)} | {_cell(s.valid())} | {s.unit} | {s.when} | {_cell(s.meaning)} |")
    lines += [
        "",
        "## Read by the tests, the benchmarks and the deployment",
        "",
        "| Variable | Default | Meaning |",
        "|---|---|---|",
        *(f"| `{s.name}` | {_default(s)} | {_cell(s.meaning)} |" for s in SETTINGS.values() if s.when == TOOLING),
        "",
        "## Without DAGSTER_HOME",
        "",
        "- `dagster asset materialize` and `dagster job execute` refuse to start (one line, exit 2): they would "
        "run on a throwaway instance, writing the lake while the run is recorded nowhere you will look again.",
        "- `pgx materialize`, `pgx demo`, `pgx status` refuse likewise; the Makefile sets "
        "`DAGSTER_HOME=.dagster_home`.",
        "- `dagster dev` keeps its runs in a temporary folder (`.tmp_dagster_home_*`) that it deletes when it "
        "exits: the code location warns when it loads, and every run's log warns too.",
        "- The Python API (`dagster.materialize(...)`, as the tests use it) runs on an in-memory instance: every "
        "run's log warns.",
        "",
    ]
    return "\n".join(lines)


def write_configuration_page(path: Path = CONFIGURATION_PAGE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(configuration_page())
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pgx_dagster.settings", description="Write the configuration page.")
    parser.add_argument("out", nargs="?", type=Path, default=CONFIGURATION_PAGE, help="default: docs/configuration.md")
    print(f"wrote {write_configuration_page(parser.parse_args().out)}")

"""The study report's Methods, provenance and synthetic-data banner, generated - never hand-copied - from
the cohort's definition (cohorts/<name>.toml), the code's own constants and code sets, and the lake.

methods_sections(d, lake)  [(heading, plain-text paragraph)]: design, matching, look-back and washout,
                           exposure window, exposure definitions, statistical model, code sets
provenance(d, lake)        {label: text}: definition file, seed, package versions, git commit, the input
                           fingerprint (files, bytes, sha256 of their (path, size) list), rows read per table,
                           the claims' date range, extract date, input format, when generated
synthetic_run(lake)        the planted effect of a pgx-synth extract (its manifest.json), None for real data

Every value of provenance() is text already, so a report never formats a seed or an id with thousands
separators. Nothing here reads a raw file's content: sizes come from a listing, row counts and dates from
what intake and silver wrote (Parquet footers), so it costs the same on a 100-GB extract as on a sample.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from pgx_dagster import apcd_release, association, power
from pgx_dagster.codesets import CODESET_DIR, DEFAULT_NDC_INGREDIENT, DEFAULT_OPIOID_NDC, versions
from pgx_dagster.cohort_definitions import DESIGNS, CohortDefinition
from pgx_dagster.datasets import ELIGIBILITY_QUARANTINE, INTAKE_QUARANTINE, KINDS, PERSON_INDEX, SILVER, STAGED
from pgx_dagster.duck import DuckDBWorker, Session, quote
from pgx_dagster.lake import LakeResource, is_s3, s3_client, s3_errors, split_s3
from pgx_dagster.partitions import AGE_BANDS
from pgx_dagster.raw_inputs import genotype_files, raw_format, source_files
from pgx_dagster.settings import REPO_ROOT, SQL_DIR, event_years

# The exposure the synthetic generator plants its effect on (ops/synth: a CYP2D6 opioid taken by a poor
# metaboliser, genetic or by an inhibitor), by the name the analysis estimates it under (features.sql).
PLANTED_EXPOSURE = "cyp2d6_opioid_functional_poor"
# The packages whose versions decide the numbers of a report.
PACKAGES = ("dagster", "duckdb", "statsmodels", "numpy", "pandas", "scipy", "pgx-dagster")
# What each event type of contracts.EVENT_TYPES is, in a reader's words (sql/events/events.sql counts them).
EVENT_TEXT = {
    "ed_visit": "emergency department (ED) visit",
    "opioid_poisoning": "opioid poisoning",
    "opioid_ed_visit": "ED visit with an opioid poisoning code",
    "opioid_use_disorder": "opioid use disorder diagnosis",
    "opioid_fill": "opioid fill",
}
FORMAT_TEXT = {
    "pgx": "the pgx raw layout",
    "tuva": "the Tuva input layer",
    "desynpuf": "CMS DE-SynPUF",
    "apcd": "a state all-payer claims database (APCD) release",
}
# Genes whose phenotype the merged cohort carries as a column (features.sql), in its order.
PHENOTYPE_GENES = ("CYP2D6", "CYP2C19", "CYP2C9", "SLCO1B1", "VKORC1")
# The sensitivity analyses of sensitivity_association (sql/analysis/sensitivity_flags.sql).
SENSITIVITY_TEXT = {
    "all_persons_genotype": "the genotype-based exposures in all persons, the ungenotyped counted as not having "
    "the phenotype (a CYP2D6 opioid user without a genotype a functional poor metaboliser only by an "
    "overlapping inhibitor)",
    "excluding_imputed_sex": "excluding the matched sets with a member whose sex in the set's year was imputed "
    "statistically (nothing observed: the member may sit in the wrong sex stratum)",
    "two_fills": "use defined as at least 2 fills in the exposure window (a group counts the fills of its drugs; "
    "the opioid-inhibitor overlap needs 2 of each)",
    "other_design": "the other sampling design, on its own matched sets",
}


# ---- methods -------------------------------------------------------------------------------------------
def methods_sections(d: CohortDefinition, lake: LakeResource) -> list[tuple[str, str]]:
    """The report's Methods: (heading, plain-text paragraph) in reading order. The code-set section has one
    line per code set (lines separated by newlines)."""
    return [
        ("Design", _design(d, lake)),
        ("Matching", _matching(d)),
        ("Look-back and washout", _lookback(d)),
        ("Exposure window", _window(d)),
        ("Exposure definitions", _exposures(d)),
        ("Statistical model", _model(d)),
        ("Code sets", "\n".join(codeset_lines(lake))),
    ]


def _events(types: tuple[str, ...]) -> str:
    return _join_or([f"{EVENT_TEXT.get(t, t)} ({t})" for t in types])


def _join(items: list[str], word: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


def _join_or(items: list[str]) -> str:
    return _join(items, "or")


def _other_design(d: CohortDefinition) -> str:
    return next(x for x in DESIGNS if x != d.design)


DESIGN_NAMES = {
    "exclusive": "cumulative (exclusive) sampling",
    "risk_set": "incidence-density (risk-set) sampling",
}


def _design(d: CohortDefinition, lake: LakeResource) -> str:
    years = event_years()
    source = FORMAT_TEXT.get(lake.raw_format, lake.raw_format)
    base = (
        f"A matched case-control study nested in the enrolled population of the claims extract ({source}), "
        f"study years {years[0]}-{years[-1]}, claims up to the extract date {lake.extract_day().isoformat()}. "
        f"Cohort {d.name}: {d.description.strip()} Cases (targets) are incident: the index date is a person's "
        f"first {_events(d.target_event_types)}; each case is matched to up to {d.controls_per_target} controls "
        f"(1:{d.controls_per_target}) from the same source population. "
    )
    if d.design == "risk_set":
        return base + (
            f'Controls are chosen by {DESIGN_NAMES["risk_set"]} (design = "risk_set"), as OHDSI CaseControl '
            "does: each case's controls are a simple random sample of its risk set - every person of the case's "
            "matching stratum at risk at its index date (under observation with the look-back, free of washout "
            "events, with no qualifying event on or before that date). A person may be a control in several "
            "sets and may later become a case, so the odds ratio estimates the incidence rate ratio without a "
            "rare-outcome assumption."
        )
    return base + (
        f'Controls are chosen by {DESIGN_NAMES["exclusive"]} (design = "exclusive", the legacy pipeline\'s '
        "standard): a control never has a qualifying event, and a person is in at most one matched set of the "
        f"cohort. So that partitions are matched independently, each person has one home year, drawn uniformly "
        f"among the {len(years)} study years, and is a candidate only in that year: every eligible person of a "
        "stratum is a candidate with the same probability, and each case's controls are a simple random sample "
        "of the candidates free and eligible at its turn (a greedy 1:k match without replacement, with a "
        "random order in place of a distance). The odds ratio estimates the risk ratio only when the outcome "
        "is rare."
    )


def _matching(d: CohortDefinition) -> str:
    k = d.controls_per_target
    order = (
        'candidates are taken in order of sample_key(seed, person_id, "control:<band>|<year>|<sex>") XOR the '
        "case's key, an independent uniform order for each case"
        if d.design == "risk_set"
        else 'candidates are taken in one order per stratum, sample_key(seed, person_id, "control:<band>|<year>|'
        '<sex>"), each case taking the first free ones'
    )
    return (
        f"Exact matching on age band ({', '.join(AGE_BANDS)} years; age = calendar year of the index date minus "
        "birth year), sex (as observed, else as imputed for the year: see the sensitivity analyses) and the "
        f"calendar year of the index date; 1:{k}, up to {k} controls per case. A control takes its case's index "
        "date and is judged eligible at it. A set that finds fewer controls is kept and its shortage recorded; "
        "persons without a birth year fall in no age band and are neither cases nor controls. The sampling "
        f"order is seeded (seed {d.seed}) and recomputable anywhere: every draw is sample_key(seed, id, salt), "
        'the first 16 hex digits of sha256("<seed>:<id>:<salt>") read as an unsigned 64-bit integer (never the '
        "database engine's hash), so the same extract and seed give the same matched sets; cases take their "
        'controls in order of index date, then of sample_key(seed, person_id, "target:<band>|<year>|<sex>"); '
        f"{order}"
        + (
            '; the home year is study_years[sample_key(seed, person_id, "home_year") mod the number of study years].'
            if d.design == "exclusive"
            else "."
        )
    )


def _exclusion_reasons() -> list[str]:
    """The reasons a first qualifying event is not a case, as sql/cohort/index_events.sql names them."""
    text = (SQL_DIR / "cohort" / "index_events.sql").read_text()
    return re.findall(r"THEN '(\w+)'", text)


def _lookback(d: CohortDefinition) -> str:
    n = d.lookback_days
    reasons = ", ".join(_exclusion_reasons())
    if n == 0:
        enrolment = (
            "No look-back is required (lookback_days = 0): a case or control need only be under observation at "
            "the index date, and there is no washout window."
        )
    else:
        enrolment = (
            f"Cases and controls alike need {n} days of continuous enrolment before the index date (an "
            f"observation period covering the index date that began at least {n} days before it)."
        )
    if not d.washout_event_types:
        washout = "No washout: every first qualifying event under observation is a case."
    elif n == 0:
        washout = f"Washout event types ({_events(d.washout_event_types)}) have no window to fall in."
    else:
        washout = (
            f"Washout: a case is incident when no {_events(d.washout_event_types)} falls in the {n} days before "
            "its index date; a control must be free of them in the same window and on the index date."
        )
    return (
        f"{enrolment} {washout} A first qualifying event that fails is excluded with its reason ({reasons}) and "
        "is never replaced by a later event, which would be a recurrence. Claims before the first study year are "
        "not kept, so the look-back cannot reach before it."
    )


def _window(d: CohortDefinition) -> str:
    w = d.exposure_window_days
    if w <= d.lookback_days:
        fit = (
            f"The window lies within the {d.lookback_days} days of continuous enrolment every member has, so a "
            "fill in it could be seen unless drug coverage was missing."
        )
    else:
        fit = (
            f"The window is {w - d.lookback_days} days longer than the {d.lookback_days}-day look-back: its "
            "earliest days may fall before a member's enrolment, when no fill could be seen."
        )
    return (
        f"Drug exposures count in the {w} days before the index date, the index date excluded (a fill dated "
        f"from index date - {w} days to index date - 1 day). A fill supplies its drug from its fill date for "
        f"its days supply (at least one day). {fit} A member whose window meets a day under observation without "
        "drug coverage (drug_coverage_gap), and with no fill of the drug seen, has that exposure unknown: it is "
        "left out of that exposure's estimate (complete case), its set keeping its other members."
    )


def pgx_drug_rows() -> list[dict[str, str]]:
    """sql/codesets/pgx_drugs.csv as rows."""
    with (CODESET_DIR / "pgx_drugs.csv").open(newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def _exposures(d: CohortDefinition) -> str:
    rows = pgx_drug_rows()
    by_drug: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_drug.setdefault(row["ingredient"], []).append(row)

    def drug_text(ingredient: str) -> str:
        genes = "; ".join(
            f"{r['gene']} CPIC level {r['cpic_level']}" if r["cpic_level"] else f"{r['gene']} {r['role']}"
            for r in by_drug[ingredient]
        )
        return f"{ingredient} ({genes})"

    group = {name: [i for i, rs in by_drug.items() if rs[0]["exposure_group"] == name] for name in
             ("cyp2d6_opioid", "strong_cyp2d6_inhibitor")}  # fmt: skip
    genes = [g for g in PHENOTYPE_GENES if any(r["gene"] == g and r["role"] == "substrate" for r in rows)]
    drug_versions = ", ".join(sorted({r["version"] for r in rows if r["version"]}))
    return (
        f"From sql/codesets/pgx_drugs.csv (version {drug_versions}). Each drug is an exposure of its own "
        f"(drug:<ingredient>), a fill of it in the window: {_join([drug_text(i) for i in by_drug])}. "
        f"Groups: cyp2d6_opioid, a fill of {_join_or(group['cyp2d6_opioid'])} (CYP2D6 substrate opioids with "
        f"CPIC guidance); strong_cyp2d6_inhibitor, a fill of {_join_or(group['strong_cyp2d6_inhibitor'])} "
        "(FDA strong CYP2D6 inhibitors); cyp2d6_opioid_with_inhibitor, a CYP2D6 opioid and a strong inhibitor "
        "whose days supplied overlap on at least one day (phenoconversion); cyp2d6_opioid_functional_poor, a "
        "CYP2D6 opioid taken by a CYP2D6 Poor Metabolizer or with an overlapping strong inhibitor (a genetic or "
        "drug-induced poor metaboliser on the drug). When genotypes are given, each drug x phenotype (a drug "
        "with CPIC guidance for a gene and one CPIC phenotype of that gene observed; genes "
        f"{', '.join(genes)}) is an exposure: the drug in the window and that phenotype. Genotype-based "
        "exposures (cyp2d6_opioid_functional_poor and every drug x phenotype) are analysed complete case: "
        "among the persons genotyped for the gene (primary analysis); the all-persons definition, which counts "
        "the ungenotyped as not poor metabolisers, is a sensitivity analysis. A member whose window meets a "
        "drug-coverage gap without a fill of the drug seen has the exposure unknown and is left out of that "
        "estimate; a fill seen makes the member exposed whatever the gaps."
    )


def _model(d: CohortDefinition) -> str:
    level = round(100 * math.erf(association.Z_95 / math.sqrt(2)))  # the CI's level, from the code's z
    defaults = inspect.signature(power.min_detectable_or).parameters
    alpha, target_power = defaults["alpha"].default, defaults["power"].default
    other = _other_design(d)
    sensitivity = [SENSITIVITY_TEXT[a] for a in ("all_persons_genotype", "excluding_imputed_sex", "two_fills")]
    sensitivity.append(f"the {other} design ({DESIGN_NAMES[other]}), on its own matched sets")
    return (
        "Conditional logistic regression of case status on each exposure, conditional on the matched set "
        "(statsmodels ConditionalLogit), fitted by Newton-Raphson from the Mantel-Haenszel estimate; odds "
        f"ratio with its Wald {level}% confidence interval and two-sided Wald p-value. The Mantel-Haenszel "
        "odds ratio over the sets (statsmodels StratifiedTable) is the cross-check. Only sets with a case and "
        "at least one control take part, and only discordant sets - whose members differ in exposure - inform "
        "an estimate: a concordant set adds nothing to the conditional likelihood. An exposure with no "
        "discordant set, or with the case exposed in every (or no) discordant set (separation), is reported "
        "as not estimable, with no odds ratio. Benjamini-Hochberg q-values control the false discovery rate "
        "over the exposures of the analysis. The minimum detectable odds ratio at "
        f"{round(100 * target_power)}% power (two-sided alpha {alpha}) is Dupont's (1988) for a 1:M matched "
        "design with the correlation of exposure within sets taken as 0, from the sets, the mean controls per "
        "set and the exposure prevalence among controls with known exposure; an estimate whose 95% CI covers 1 "
        "and which lies closer to 1 than the sets can detect is flagged underpowered (no evidence of no effect). "
        f"Sensitivity analyses, beside the primary in the forest plot: {'; '.join(sensitivity)}."
    )


def _readme_sources() -> dict[str, tuple[str, str]]:
    """code set -> (concept, source) from the table of sql/codesets/README.md."""
    out = {}
    for line in (CODESET_DIR / "README.md").read_text().splitlines():
        m = re.fullmatch(r"\|\s*`(\w+)\.csv`\s*\|(.*?)\|(.*)\|\s*", line)
        if m:
            out[m.group(1)] = (m.group(2).strip(), m.group(3).strip())
    return out


def _file_sources(path: str) -> str:
    """The distinct `source` values of a user's code-set file (its own account of where it comes from)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        found = sorted({row.get("source") or "" for row in csv.DictReader(f)} - {""})
    return "; ".join(found[:3]) + (f" (and {len(found) - 3} more)" if len(found) > 3 else "")


def _versions(lake: LakeResource) -> dict[str, list[str]] | str:
    """codesets.versions of the files in use, or why they could not be read (a file not readable here)."""
    try:
        return versions(lake.opioid_ndc_file, lake.ndc_ingredient_file)
    except OSError as error:
        return f"code-set versions not read: {error}"


def codeset_lines(lake: LakeResource) -> list[str]:
    """One line per code set in use: its name, version(s), concept and source (sql/codesets/README.md; for a
    file the user gave, its path and its own `source` column)."""
    found = _versions(lake)
    if isinstance(found, str):
        return [found]
    readme = _readme_sources()
    given = {"opioid_ndc": (lake.opioid_ndc_file, "PGX_OPIOID_NDC_FILE"),
             "ndc_ingredient": (lake.ndc_ingredient_file, "PGX_NDC_INGREDIENT_FILE")}  # fmt: skip
    shipped = {DEFAULT_OPIOID_NDC.resolve(), DEFAULT_NDC_INGREDIENT.resolve()}
    lines = []
    for name, names in found.items():
        concept, source = readme.get(name, ("", ""))
        path, setting = given.get(name, ("", ""))
        if path and Path(path).resolve() not in shipped:
            source = f"{setting}={path}; its source column: {_file_sources(path) or 'none given'}"
        line = f"{name} version {', '.join(names) or 'not given'}" + (f": {concept}" if concept else "")
        lines.append(f"{line}. Source: {source or 'not named'}".replace("`", ""))
    return lines


# ---- provenance ------------------------------------------------------------------------------------------
def git_commit(root: Path = REPO_ROOT) -> str:
    """The checked-out commit (40 hex digits) read from `root`/.git without running git - a branch's ref
    file, else packed-refs; a worktree's `.git` file points at its git dir - or '' outside a checkout."""
    dot_git = root / ".git"
    if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
        text = dot_git.read_text().strip()
        if not text.startswith("gitdir:"):
            return ""
        git_dir = (root / text[len("gitdir:") :].strip()).resolve()
    elif dot_git.is_dir():
        git_dir = dot_git
    else:
        return ""
    head = git_dir / "HEAD"
    if not head.is_file():
        return ""
    ref = head.read_text().strip()
    if not ref.startswith("ref: "):
        return ref if re.fullmatch(r"[0-9a-f]{40}", ref) else ""  # a detached HEAD
    name = ref[len("ref: ") :]
    common = git_dir / "commondir"  # a worktree keeps branches in the main repository's git dir
    dirs = [git_dir] + ([(git_dir / common.read_text().strip()).resolve()] if common.is_file() else [])
    for folder in dirs:
        if (folder / name).is_file():
            return (folder / name).read_text().strip()
    for folder in dirs:
        packed = folder / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == name:
                    return parts[0]
    return ""


def code_version() -> str:
    """The package version and, in a git checkout, the commit: `pgx-dagster 0.1.0, commit 0123456789ab`."""
    commit = git_commit()
    return f"pgx-dagster {_version('pgx-dagster')}" + (f", commit {commit[:12]}" if commit else "")


def _version(package: str) -> str:
    try:
        return package_version(package)
    except PackageNotFoundError:
        return "not installed"


def input_files(lake: LakeResource) -> dict[str, list[str]]:
    """The raw input files the pipeline reads, by source in the user's words (raw_inputs / apcd_release find
    them the same way), genotypes included: a listing, no file opened."""
    fmt = raw_format(lake.raw_format)
    found: dict[str, list[str]] = {}
    if fmt.name == "apcd":
        for table, (_view, label, _override) in apcd_release.TABLES.items():
            found[label] = apcd_release.table_files(lake, table)[0]
    for source in fmt.sources:
        found[source.label] = source_files(lake, source)[0]
    found["genotypes"] = genotype_files(lake)
    return found


def file_sizes(paths: list[str]) -> dict[str, int]:
    """Size in bytes of each path: a stat locally; on S3 one listing per bucket and common prefix."""
    sizes = {p: os.stat(p).st_size for p in paths if not is_s3(p)}
    by_bucket: dict[str, list[str]] = {}
    for p in paths:
        if is_s3(p):
            bucket, key = split_s3(p)
            by_bucket.setdefault(bucket, []).append(key)
    for bucket, keys in by_bucket.items():
        common = os.path.commonprefix(keys)
        prefix = common[: common.rfind("/") + 1]  # the folder all the keys are under ("" for the bucket)
        wanted = set(keys)
        with s3_errors(f"listing s3://{bucket}/{prefix}"):
            for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    if obj["Key"] in wanted:
                        sizes[f"s3://{bucket}/{obj['Key']}"] = int(obj["Size"])
    return sizes


def fingerprint(lake: LakeResource) -> tuple[int, int, str]:
    """(files, total bytes, sha256 hex) of the raw inputs. The digest is over the sorted lines
    "<path relative to its raw root>\\t<size>": the same extract copied to another folder or bucket gives
    the same fingerprint, and a file added, removed, renamed or changed in size another."""
    paths = sorted({p for files in input_files(lake).values() for p in files})
    sizes = file_sizes(paths)
    roots = [r.rstrip("/") + "/" for r in lake.raw_roots()]

    def relative(path: str) -> str:
        return next((path[len(r) :] for r in roots if path.startswith(r)), path)

    lines = sorted(f"{relative(p)}\t{sizes[p]}\n" for p in paths)
    digest = hashlib.sha256("".join(lines).encode()).hexdigest()
    return len(paths), sum(sizes.values()), digest


@contextmanager
def _session(lake: LakeResource, s: Session | None) -> Iterator[Session]:
    """`s`, else a session of this process's DuckDB (httpfs and the S3 secret when the lake is on S3)."""
    if s is not None:
        yield s
        return
    worker = DuckDBWorker(s3=is_s3(lake.lake_root) or is_s3(lake.raw_root))
    with worker.process_config_and_initialize().session() as session:
        yield session


def _footer_rows(s: Session, files: list[str]) -> int:
    """Rows of Parquet files, from their footers (no data read)."""
    if not files:
        return 0
    listing = ", ".join(quote(f) for f in files)
    return int(s.scalar(f"SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata([{listing}])"))


def _existing(lake: LakeResource, patterns: list[str]) -> list[str]:
    return sorted({f for p in patterns for f in lake.files(p)})


def rows_read(lake: LakeResource, s: Session) -> dict[str, str]:
    """Rows intake read per table, from what it wrote: a claim table's raw rows are the rows it staged plus
    the rows it quarantined (claims_intake: rows_in = staged + quarantined), counted from the Parquet
    footers of every configured shard; member ids from person_index; eligibility rows when intake's
    eligibility quarantine recorded them in its checkpoint."""
    out = {}
    for kind in KINDS:
        staged = _existing(lake, STAGED[kind].all_files(lake))
        quarantined = _existing(lake, INTAKE_QUARANTINE[kind].files(lake))
        label = f"rows read: {kind} claims"
        if not staged and not quarantined:
            out[label] = "not recorded (intake has not run)"
            continue
        n_staged, n_quarantined = _footer_rows(s, staged), _footer_rows(s, quarantined)
        out[label] = f"{n_staged + n_quarantined:,} ({n_staged:,} placed, {n_quarantined:,} quarantined by intake)"
    eligibility = (ELIGIBILITY_QUARANTINE.checkpoint(lake).get("metrics") or {}).get("rows_in")
    out["rows read: eligibility"] = f"{eligibility:,}" if isinstance(eligibility, int) else "not recorded"
    members = _existing(lake, [PERSON_INDEX.path(lake)])
    out["member ids linked"] = f"{_footer_rows(s, members):,}" if members else "not recorded (intake has not run)"
    return out


DATE_COLUMNS = {"medical": "service_date", "pharmacy": "fill_date"}


def claims_date_range(lake: LakeResource, s: Session) -> dict[str, tuple[str, str] | None]:
    """(first, last) date of the claims silver kept, per kind (medical service dates, pharmacy fill dates):
    from the Parquet statistics of silver's files; a min/max over the one column where a file has none."""
    out: dict[str, tuple[str, str] | None] = {}
    for kind, column in DATE_COLUMNS.items():
        files = _existing(lake, [SILVER[kind].glob(lake)])
        if not files:
            out[kind] = None
            continue
        listing = ", ".join(quote(f) for f in files)
        lo, hi, missing = s.execute(
            f"SELECT min(TRY_CAST(stats_min_value AS DATE)), max(TRY_CAST(stats_max_value AS DATE)), "
            f"count(*) FILTER (WHERE num_values > 0 AND stats_min_value IS NULL) "
            f"FROM parquet_metadata([{listing}]) WHERE path_in_schema = {quote(column)}"
        ).fetchone()
        if missing:  # a file written without statistics: read the column itself
            lo, hi = s.execute(f'SELECT min("{column}"), max("{column}") FROM read_parquet([{listing}])').fetchone()
        out[kind] = (lo.isoformat(), hi.isoformat()) if lo is not None and hi is not None else None
    return out


def _date_range_text(ranges: dict[str, tuple[str, str] | None]) -> str:
    present = {k: v for k, v in ranges.items() if v}
    if not present:
        return "not recorded (silver has not run)"
    lo, hi = min(v[0] for v in present.values()), max(v[1] for v in present.values())
    detail = "; ".join(f"{k} {DATE_COLUMNS[k].replace('_', ' ')}s {v[0]} to {v[1]}" for k, v in present.items())
    return f"{lo} to {hi} ({detail})"


def _definition_file(d: CohortDefinition) -> str:
    path = Path(d.source)
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def provenance(d: CohortDefinition, lake: LakeResource, s: Session | None = None) -> dict[str, str]:
    """Everything a reader needs to reproduce the report, every value as text: the definition and its seed,
    package versions, the git commit, the input fingerprint, rows read, the claims' dates, the extract date,
    the input format, the code sets and when it was generated. `s`: a DuckDB session to read Parquet footers
    with (one of this process is opened when none is given)."""
    n_files, n_bytes, digest = fingerprint(lake)
    definition = Path(d.source)
    codes = _versions(lake)
    with _session(lake, s) as session:
        rows = rows_read(lake, session)
        dates = _date_range_text(claims_date_range(lake, session))
    return {
        "cohort definition": _definition_file(d),
        "cohort definition sha256": hashlib.sha256(definition.read_bytes()).hexdigest()
        if definition.is_file()
        else "not found",
        "design": f"{d.design}, 1:{d.controls_per_target}, look-back {d.lookback_days} days, exposure window "
        f"{d.exposure_window_days} days",
        "seed": str(d.seed),
        "python": sys.version.split()[0],
        **{package: _version(package) for package in PACKAGES},
        "git commit": git_commit() or "not a git checkout",
        "input files": f"{n_files:,} files, {n_bytes:,} bytes",
        "input fingerprint": f"sha256 {digest}",
        **rows,
        "claims date range": dates,
        "extract date": lake.extract_day().isoformat(),
        "input format": lake.raw_format,
        "code sets": codes if isinstance(codes, str) else "; ".join(f"{k} {', '.join(v)}" for k, v in codes.items()),
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ---- synthetic data --------------------------------------------------------------------------------------
def synthetic_run(lake: LakeResource) -> dict[str, Any] | None:
    """The planted effect when a raw root holds pgx-synth's manifest.json (the first root that does):
    {generator, seed (text: an identifier), persons, planted_odds_ratio, planted_exposure (text),
    exposure (the analysis's name for it)}. None for real data - and for a manifest that cannot be read or
    lacks any of these, rather than an error: the banner is a courtesy, not a gate."""
    for root in lake.raw_roots():
        try:
            text = lake.read_text(f"{root}/manifest.json")
            manifest = json.loads(text) if text else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        run = _planted(manifest)
        if run:
            return run
    return None


def _planted(manifest: object) -> dict[str, Any] | None:
    if not isinstance(manifest, dict) or manifest.get("generator") != "pgx-synth":
        return None
    effect = manifest.get("planted_effect")
    seed, persons = manifest.get("seed"), manifest.get("persons")
    if not isinstance(effect, dict) or type(seed) is not int or type(persons) is not int:
        return None
    odds_ratio, exposure = effect.get("odds_ratio"), effect.get("exposure")
    if not isinstance(odds_ratio, int | float) or isinstance(odds_ratio, bool) or not isinstance(exposure, str):
        return None
    if not (math.isfinite(odds_ratio) and odds_ratio > 0):
        return None
    return {
        "generator": "pgx-synth",
        "seed": str(seed),
        "persons": persons,
        "planted_odds_ratio": float(odds_ratio),
        "planted_exposure": exposure,
        "exposure": PLANTED_EXPOSURE,
    }

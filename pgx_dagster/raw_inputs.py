"""Raw inputs, the one place that finds them: which files each input format has, where the legacy
pipeline's layouts and the PGX_RAW_* overrides point, how the files become the raw tables intake
reads, and the preflight that shows all of it (`pgx validate-inputs`).

PGX_RAW_FORMAT picks one:
  pgx       our raw layout (Parquet: medical_claims/, pharmacy_claims/, member_eligibility/,
            member_linkage/; the legacy pipeline's layouts and PGX_RAW_* overrides are honoured)
  tuva      the Tuva Project input layer: eligibility, medical_claim, pharmacy_claim (CSV or Parquet;
            `person_id` since Tuva 0.13, `patient_id` before)
  desynpuf  CMS DE-SynPUF: beneficiary summaries per year, carrier / inpatient / outpatient claims,
            prescription drug events (CSV)

Each format declares its source files (name patterns under every folder of PGX_RAW_ROOT, which may
list several, comma-separated) and the columns it reads. A missing required column is a clear
error naming the file; a missing optional column reads as NULL. The mapping itself is SQL:
`sql/formats/<format>/{medical,pharmacy,eligibility,enrollment,linkage}.sql`, each producing one raw
table (raw_medical, raw_pharmacy, raw_eligibility, raw_enrollment, raw_linkage) in our raw layout.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
from dagster import Failure

from pgx_dagster import apcd_release
from pgx_dagster.codesets import register_geography
from pgx_dagster.datasets import IMPUTED, KINDS, SILVER
from pgx_dagster.duck import DataDefect, Session, quote, redact
from pgx_dagster.lake import LakeResource
from pgx_dagster.settings import SettingError, did_you_mean

RAW_TABLES = ("medical_claims", "pharmacy_claims", "member_eligibility", "member_linkage")
# The external assets that stand for them in the asset graph (stages/raw.py).
RAW_ASSET_KEYS = [f"raw_{table}" for table in RAW_TABLES]
# pgx format: where each raw table may be found under PGX_RAW_ROOT, in order of preference (the first
# that has files). The legacy pipeline's layouts are accepted so existing lakes keep working: its
# partitioned imputed silver (its preferred input) and its non-partitioned silver glob.
# Its lake layout is ours (pgx_dagster/datasets.py), so the dataset module names those folders.
RAW_CANDIDATES: dict[str, list[tuple[str, str]]] = {
    **{
        f"{kind}_claims": [
            (f"{kind}_claims/*.parquet", "the pgx raw layout"),
            (
                f"{IMPUTED[kind].folder}/age_band=*/event_year=*/*.parquet",
                "the legacy pipeline's partitioned imputed silver layout (its preferred input)",
            ),
            (f"{SILVER[kind].folder}/*.parquet", "the legacy pipeline's non-partitioned silver glob"),
        ]
        for kind in KINDS
    },
    "member_eligibility": [("member_eligibility/*.parquet", "the pgx raw layout")],
    "member_linkage": [("member_linkage/*.parquet", "the pgx raw layout")],
}


def raw_candidates(lake: LakeResource, table: str) -> list[tuple[str, str]]:
    """(path, why) in order of preference for one raw table of the pgx format."""
    if table not in RAW_TABLES:
        raise ValueError(f"unknown raw table {table!r}; expected one of {RAW_TABLES}")
    if lake.raw_overrides.get(table):
        return [(lake.raw_overrides[table], "set explicitly (PGX_RAW_* override)")]
    root = lake.raw_roots()[0]
    return [(f"{root}/{pattern}", why) for pattern, why in RAW_CANDIDATES[table]]


_RESOLVED: dict[tuple, tuple[str, str]] = {}


def raw_glob(lake: LakeResource, table: str) -> str:
    """The path the pipeline reads for a raw table: the first candidate that has files (or, if none has,
    the first candidate, so the error names the expected place). Remembered per process once found
    (listing S3 is not free)."""
    candidates = tuple(raw_candidates(lake, table))
    if candidates in _RESOLVED:
        return _RESOLVED[candidates][0]
    if len(candidates) == 1:
        return candidates[0][0]
    for candidate in candidates:
        if lake.files(candidate[0]):
            _RESOLVED[candidates] = candidate
            return candidate[0]
    return candidates[0][0]


# In the order they are created: the claim mappings may read the member tables.
RAW_VIEWS = {
    "raw_eligibility": "eligibility",
    "raw_enrollment": "enrollment",
    "raw_drug_coverage": "drug_coverage",
    "raw_linkage": "linkage",
    "raw_ages": "ages",
    "raw_medical": "medical",
    "raw_pharmacy": "pharmacy",
}


def _numbered(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, n + 1))


@dataclass(frozen=True)
class Source:
    """One source table of a format, read into the view `view`."""

    view: str
    label: str = ""  # what the user calls it in messages ("medical claims", "Tuva eligibility"): never the view
    patterns: tuple[str, ...] = ()  # globs under each raw folder; per folder the first that has files
    pgx_table: str = ""  # pgx format: resolved by raw_glob (legacy layouts, overrides)
    required: tuple[str, ...] = ()
    optional: dict[str, str] = field(default_factory=dict)  # column -> type when absent
    with_filename: bool = False  # add the file's path as `filename`
    may_be_absent: bool = False  # no files: an empty table (e.g. DE-SynPUF without carrier claims)
    # Older names of a column, read as the current one when only an older one is present (the Tuva
    # input layer named the person `patient_id` before version 0.13, `person_id` since).
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class RawFormat:
    name: str
    sources: tuple[Source, ...]


def _tuva(stem: str, required: tuple[str, ...], optional: tuple[str, ...]) -> Source:
    """A table of the Tuva input layer: `<stem>.csv`, `.parquet` or a folder of either; the person column
    is `person_id` (Tuva >= 0.13) or `patient_id` (before)."""
    return Source(
        f"tuva_{stem}",
        f"Tuva {stem}",
        (f"{stem}.csv", f"{stem}.parquet", f"{stem}/*.parquet", f"{stem}/*.csv"),
        required=required,
        optional=dict.fromkeys(optional, "VARCHAR"),
        aliases={"person_id": ("patient_id",)},
    )


_DESYNPUF_INSTITUTIONAL = dict.fromkeys(
    ("SEGMENT", "CLM_PMT_AMT", "ADMTNG_ICD9_DGNS_CD", *_numbered("ICD9_DGNS_CD_", 10), *_numbered("HCPCS_CD_", 45)),
    "VARCHAR",
)

FORMATS: dict[str, RawFormat] = {
    "pgx": RawFormat(
        "pgx",
        (
            # Required: what a row cannot do without (guards.REQUIRED); the rest reads as NULL when absent.
            Source(
                "src_medical_claims",
                "medical claims",
                pgx_table="medical_claims",
                required=("payer_id", "member_id", "claim_id", "service_date", "diagnosis_code_1", "procedure_code"),
                optional={
                    **dict.fromkeys(
                        (
                            "claim_line",
                            "claim_version",
                            "claim_type",
                            "revenue_code",
                            "place_of_service",
                            "diagnosis_code_2",
                            "diagnosis_code_3",
                            "patient_sex",
                            "patient_zip",
                            "paid_amount",
                        ),
                        "VARCHAR",
                    ),
                    "other_diagnosis_codes": "VARCHAR[]",
                },  # fmt: skip
            ),
            Source(
                "src_pharmacy_claims",
                "pharmacy claims",
                pgx_table="pharmacy_claims",
                required=("payer_id", "member_id", "claim_id", "fill_date", "ndc"),
                optional=dict.fromkeys(
                    (
                        "claim_line",
                        "claim_version",
                        "quantity",
                        "days_supply",
                        "patient_sex",
                        "patient_zip",
                        "paid_amount",
                    ),
                    "VARCHAR",
                ),  # fmt: skip
            ),
            Source(
                "src_member_eligibility",
                "member eligibility",
                pgx_table="member_eligibility",
                required=("payer_id", "member_id", "coverage_year", "birth_year"),
                optional=dict.fromkeys(
                    (
                        "sex",
                        "zip",
                        "state",
                        "enrollment_start_date",
                        "enrollment_end_date",
                        "age",
                        "coverage_month",
                        "medical_coverage",
                        "drug_coverage",
                    ),
                    "VARCHAR",
                ),  # fmt: skip
            ),
            Source(
                "src_member_linkage",
                "member linkage",
                pgx_table="member_linkage",
                required=("payer_id", "member_id", "person_id"),
            ),
        ),
    ),
    "tuva": RawFormat(
        "tuva",
        (
            _tuva(
                "eligibility",
                ("person_id", "birth_date", "gender", "enrollment_start_date"),
                ("member_id", "payer", "enrollment_end_date", "zip_code", "state"),
            ),
            _tuva(
                "medical_claim",
                ("claim_id", "claim_line_number", "person_id", "claim_start_date"),
                (
                    "member_id",
                    "payer",
                    "claim_type",
                    "claim_line_start_date",
                    "revenue_center_code",
                    "place_of_service_code",
                    "hcpcs_code",
                    "paid_amount",
                    *_numbered("diagnosis_code_", 25),
                ),
            ),  # fmt: skip
            _tuva(
                "pharmacy_claim",
                ("claim_id", "person_id", "dispensing_date", "ndc_code"),
                ("claim_line_number", "member_id", "payer", "quantity", "days_supply", "paid_amount"),
            ),
        ),
    ),
    "desynpuf": RawFormat(
        "desynpuf",
        (
            Source(
                "desynpuf_beneficiary",
                "DE-SynPUF beneficiary summary",
                ("*Beneficiary_Summary_File*.csv",),
                required=("DESYNPUF_ID", "BENE_BIRTH_DT", "BENE_SEX_IDENT_CD"),
                optional=dict.fromkeys(
                    (
                        "SP_STATE_CODE",
                        "BENE_DEATH_DT",
                        "BENE_HI_CVRAGE_TOT_MONS",
                        "BENE_SMI_CVRAGE_TOT_MONS",
                        "BENE_HMO_CVRAGE_TOT_MONS",
                        "PLAN_CVRG_MOS_NUM",
                    ),
                    "VARCHAR",
                ),
                with_filename=True,
            ),
            Source(
                "desynpuf_carrier",
                "DE-SynPUF carrier claims",
                ("*Carrier_Claims*.csv",),
                may_be_absent=True,
                required=("DESYNPUF_ID", "CLM_ID", "CLM_FROM_DT"),
                optional=dict.fromkeys(
                    (
                        *_numbered("ICD9_DGNS_CD_", 8),
                        *_numbered("HCPCS_CD_", 13),
                        *_numbered("LINE_ICD9_DGNS_CD_", 13),
                        *_numbered("LINE_NCH_PMT_AMT_", 13),
                    ),
                    "VARCHAR",
                ),
            ),
            *(
                Source(
                    f"desynpuf_{kind.lower()}",
                    f"DE-SynPUF {kind.lower()} claims",
                    (f"*{kind}_Claims*.csv",),
                    may_be_absent=True,
                    required=("DESYNPUF_ID", "CLM_ID", "CLM_FROM_DT"),
                    optional=_DESYNPUF_INSTITUTIONAL,
                )
                for kind in ("Inpatient", "Outpatient")
            ),
            Source(
                "desynpuf_pde",
                "DE-SynPUF prescription drug events",
                ("*Prescription_Drug_Events*.csv",),
                may_be_absent=True,
                required=("DESYNPUF_ID", "PDE_ID", "SRVC_DT", "PROD_SRVC_ID"),
                optional=dict.fromkeys(("QTY_DSPNSD_NUM", "DAYS_SUPLY_NUM", "TOT_RX_CST_AMT"), "VARCHAR"),
            ),
        ),
    ),
    # A state APCD release: its MC/PC/ME/PE files are found and read by apcd_release.py (element codes,
    # delimiters, headers or a layout); here only the optional linkage file of member ids to persons.
    "apcd": RawFormat(
        "apcd",
        (
            Source(
                "apcd_linkage",
                "APCD member linkage",
                ("member_linkage/*.parquet", "member_linkage/*.csv", "linkage/*.parquet", "linkage/*.csv"),
                required=("member_id", "person_id"),
                optional={"payer_id": "VARCHAR"},
                may_be_absent=True,
            ),
        ),
    ),
}


def raw_format(name: str) -> RawFormat:
    if name not in FORMATS:
        raise SettingError(
            f"PGX_RAW_FORMAT={name!r} is not valid: expected one of {', '.join(FORMATS)}{did_you_mean(name, FORMATS)}"
        )
    return FORMATS[name]


def expected_files(source: Source) -> str:
    """Where a source's files are expected under PGX_RAW_ROOT, in words."""
    if source.pgx_table:
        return " or ".join(pattern for pattern, _why in RAW_CANDIDATES[source.pgx_table])
    return " or ".join(source.patterns)


def no_files(lake: LakeResource, fmt: RawFormat, source: Source, tried: list[str]) -> DataDefect:
    """No files for a source: the format, the files expected, PGX_RAW_ROOT and what to do."""
    from pgx_dagster.resources import RAW_OVERRIDE_VARS

    override = f" (or {RAW_OVERRIDE_VARS[source.pgx_table]})" if source.pgx_table in RAW_OVERRIDE_VARS else ""
    where = (f"at {RAW_OVERRIDE_VARS[source.pgx_table]}={lake.raw_overrides[source.pgx_table]}"
             if lake.raw_overrides.get(source.pgx_table) else f"under PGX_RAW_ROOT={lake.raw_root}")  # fmt: skip
    return DataDefect(
        f"no {source.label} files {where} (PGX_RAW_FORMAT={fmt.name}): expected {expected_files(source)}; tried "
        f"{', '.join(tried)}. Put the files there, point PGX_RAW_ROOT{override} at them, or set PGX_RAW_FORMAT to "
        "their layout (`pgx validate-inputs` shows what is read)."
    )


def source_files(lake: LakeResource, source: Source) -> tuple[list[str], list[str]]:
    """(files found, patterns tried) for one source, over every raw folder."""
    if source.pgx_table:
        path = raw_glob(lake, source.pgx_table)
        return lake.files(path), [path]
    found, tried = [], []
    for root in lake.raw_roots():
        for pattern in source.patterns:
            tried.append(f"{root}/{pattern}")
            files = lake.files(tried[-1])
            if files:
                found += files
                break
    return found, tried


def _reader(files: list[str], source: Source) -> str:
    listing = ", ".join(quote(f) for f in files)
    filename = ", filename = true" if source.with_filename else ""
    if all(f.endswith(".parquet") for f in files):
        return f"read_parquet([{listing}], union_by_name = true, hive_partitioning = false{filename})"
    # Every CSV field as text: NDCs, zip codes and revenue codes keep their leading zeros.
    return f"read_csv([{listing}], header = true, all_varchar = true, union_by_name = true{filename})"


def _with_aliases(column: str, source: Source) -> str:
    return f"{column} (or {' / '.join(source.aliases[column])})" if column in source.aliases else column


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def file_columns(s: Session, files: list[str], source: Source) -> dict[str, set[str]]:
    """The columns of each file (Parquet footers, CSV headers). A file that cannot be read as what it
    claims to be stops here, named, before any query reads it."""
    if all(f.endswith(".parquet") for f in files):
        listing = ", ".join(quote(f) for f in files)
        try:
            with s.doing(f"{source.label}: reading the Parquet footers"):
                rows = s.execute(f"SELECT file_name, name FROM parquet_schema([{listing}])").fetchall()
        except DataDefect:
            raise unreadable(s, files, source) from None
        out: dict[str, set[str]] = {f: set() for f in files}
        for path, name in rows:
            out.setdefault(path, set()).add(name)
        return out
    out = {}
    for path in files:
        try:
            with s.doing(f"{source.label}: reading the header of {path}"):
                out[path] = {name for name, _type in s.columns(_reader([path], source))}
        except DataDefect:
            raise unreadable(s, [path], source) from None
    return out


def unreadable(s: Session, files: list[str], source: Source) -> DataDefect:
    """The first of `files` that cannot be read whole, as a message naming it (each file read in full:
    only on the way to an error)."""
    for path in files:
        try:
            s.con.execute(f"SELECT sum(hash(t)) FROM {_reader([path], source)} t").fetchone()
        except duckdb.Error as error:
            kind = "Parquet" if path.endswith(".parquet") else "CSV"
            return DataDefect(
                f"{source.label} file {path} cannot be read as {kind}: {redact(str(error))}. The file is damaged "
                "or not what its name says: replace it with a good copy (or remove it) and re-run."
            )
    return DataDefect(f"{source.label}: its files ({len(files)}) could not be read together; each reads alone.")


def check_raw_readable(s: Session, used: dict[str, list[str]]) -> DataDefect | None:
    """After a query over the raw views failed: the raw file that cannot be read whole, if any."""
    sources = {src.label: src for fmt in FORMATS.values() for src in fmt.sources}
    for label, files in used.items():
        for path in files:
            spec = apcd_release.LAST_SPECS.get(path) if label not in sources else None
            if spec:
                if culprit := apcd_release.damaged(s, spec):
                    return culprit
                continue
            try:
                s.con.execute(f"SELECT sum(hash(t)) FROM {_reader([path], sources[label])} t").fetchone()
            except duckdb.Error:
                return unreadable(s, [path], sources[label])
    return None


@contextmanager
def reading_raw(s: Session, used: dict[str, list[str]]) -> Iterator[None]:
    """Around SQL that reads the raw views: a damaged file found only when its pages are decoded (the
    footer was fine) is named, not reported as a failure of the SQL model."""
    try:
        yield
    except DataDefect:
        culprit = check_raw_readable(s, used)
        if culprit is not None:
            raise culprit from None
        raise


def register_raw(
    s: Session, lake: LakeResource, tables: tuple[str, ...] = tuple(RAW_VIEWS), stage_in: str | None = None
) -> dict[str, list[str]]:
    """Views raw_medical / raw_pharmacy / raw_eligibility / raw_linkage in the raw layout, whatever
    the input format. Returns the files each source reads, by the source's name in the user's words (for logs
    and metadata: "medical claims", "Tuva eligibility"; never the internal view). `stage_in`: a scratch folder
    where an APCD release's text is staged as Parquet for a step that reads it several times."""
    fmt = raw_format(lake.raw_format)
    # Open enrolment spans run to the extract date.
    s.set_variables({"extract_date": lake.extract_day()})
    register_geography(s)
    used: dict[str, list[str]] = apcd_release.register_apcd(s, lake, stage_in) if fmt.name == "apcd" else {}
    for source in fmt.sources:
        files, tried = source_files(lake, source)
        if not files and source.may_be_absent:
            columns = [*source.required, *source.optional, *(["filename"] if source.with_filename else [])]
            types = {**dict.fromkeys(columns, "VARCHAR"), **source.optional}
            nulls = ", ".join(f'NULL::{types[c]} AS "{c}"' for c in columns)
            s.view(source.view, f"(SELECT {nulls} LIMIT 0)")
            used[source.label] = []
            continue
        if not files:
            raise no_files(lake, fmt, source, tried)
        per_file = file_columns(s, files, source)
        for path, columns_of_file in per_file.items():
            missing = [c for c in source.required if not {c, *source.aliases.get(c, ())} & columns_of_file]
            if missing:
                others = sum(1 for f, cols in per_file.items() if f != path and set(missing) - cols)
                raise DataDefect(
                    f"{source.label} file {path} has no column {', '.join(_with_aliases(c, source) for c in missing)}"
                    + (f" (nor do {others} other file(s))" if others else "")
                    + f": the {fmt.name} format needs {', '.join(_with_aliases(c, source) for c in source.required)} "
                    '(README "Raw layout" / "Input formats"). Add or rename the column in the file and re-run.'
                )
        present = set().union(*per_file.values())
        relation = _reader(files, source)
        # Declared order (the SQL gathers numbered columns such as HCPCS_CD_1..45 by pattern).
        absent = {c: f'NULL::{t} AS "{c}"' for c, t in source.optional.items() if c not in present}
        # A column under its current or an older name (files of both versions may be read together).
        named = {c: f'coalesce({", ".join(quote_ident(n) for n in (c, *source.aliases[c]) if n in present)}) AS "{c}"'
                 for c in source.aliases if {c, *source.aliases[c]} & present}  # fmt: skip

        if source.pgx_table:
            columns = ["*", *absent.values()]
        else:
            columns = [absent.get(c) or named.get(c) or f'"{c}"' for c in (*source.required, *source.optional)]
            columns += ["filename"] if source.with_filename else []
        s.view(source.view, f"(SELECT {', '.join(columns)} FROM {relation})", f"reading the {source.label} files")
        used[source.label] = files
    for view in tables:
        s.model_view(view, f"formats/{fmt.name}/{RAW_VIEWS[view]}")
    return used


# ---- the preflight: `pgx validate-inputs` -----------------------------------------------------------
def validate_inputs(lake: LakeResource) -> tuple[bool, list[str]]:
    if lake.raw_format == "apcd":
        return _validate_apcd(lake)
    if lake.raw_format != "pgx":
        return _validate_format(lake)
    lines = [f"Raw inputs under {lake.raw_root}:"]
    ok = True
    for table in RAW_TABLES:
        candidates = raw_candidates(lake, table)
        try:
            found = [(path, why, len(lake.files(path))) for path, why in candidates]
        except Failure as error:  # S3 unreachable or refusing: trying the other tables would only wait again
            lines += [f"  {table}:", f"     ERROR: {error.description}", "  (the other tables were not tried)"]
            return False, lines
        chosen = next(((p, w, n) for p, w, n in found if n), None)
        lines.append(f"  {table}:")
        for path, why, n in found:
            mark = "->" if chosen and path == chosen[0] else "  "
            lines.append(f"    {mark} {path}  [{n} file(s); {why}]")
        if chosen:
            lines.append(f"     uses {chosen[0]} ({chosen[1]})")
        else:
            ok = False
            tried = ", ".join(p for p, _, _ in found)
            lines.append(f"     ERROR: no files for {table}; tried {tried}")
    return ok, lines


def _validate_apcd(lake: LakeResource) -> tuple[bool, list[str]]:
    """The APCD release's files and elements (apcd_release.validate), then the optional linkage file."""
    from pgx_dagster.resources import build_resources

    # httpfs and the S3 secret when the release is on S3 (Parquet footers are read through DuckDB)
    worker = build_resources(raw_root=lake.raw_root, lake_root=lake.lake_root)["duckdb"]
    with worker.process_config_and_initialize().global_session() as s:
        ok, lines = apcd_release.validate(lake, s)
    linkage_ok, linkage_lines = _validate_format(lake)
    return ok and linkage_ok, lines + linkage_lines[1:] + [
        "  persons: from the cross-payer key where a record has one, else from the linkage file, else the member id"
    ]


def _validate_format(lake: LakeResource) -> tuple[bool, list[str]]:
    """Tuva / DE-SynPUF: the files each source of the format would read."""
    fmt = raw_format(lake.raw_format)
    lines = [f"Raw inputs ({fmt.name} format) under {lake.raw_root}:"]
    ok = True
    for source in fmt.sources:
        try:
            files, tried = source_files(lake, source)
        except Failure as error:
            lines += [f"  {source.label}:", f"     ERROR: {error.description}", "  (the other sources were not tried)"]
            return False, lines
        lines.append(f"  {source.label}: {len(files)} file(s)")
        lines += [f"    -> {f}" for f in files]
        if not files:
            lines.append(f"     {'(none: read as empty)' if source.may_be_absent else 'ERROR: no files'}; tried "
                         + ", ".join(tried))  # fmt: skip
            ok &= source.may_be_absent
    return ok, lines


# ---- genotypes (optional) -------------------------------------------------------------------------------
GENOTYPE_COLUMNS = ("person_id", "gene", "phenotype")


def genotype_files(lake: LakeResource) -> list[str]:
    """PGX_GENOTYPES as a file, a glob or a folder (its *.parquet, else its *.csv); unset: the raw
    root's genotypes/ folder."""
    given = lake.genotypes.rstrip("/") or f"{lake.raw_roots()[0]}/genotypes"
    if re.search(r"[*?\[]|\.(parquet|csv)$", given):
        return lake.files(given)
    return lake.files(f"{given}/*.parquet") or lake.files(f"{given}/*.csv")


def register_genotypes(s: Session, lake: LakeResource) -> list[str]:
    """View `genotypes` (person_id, gene, phenotype) from PGX_GENOTYPES, else <raw root>/genotypes/*.parquet
    when it exists, else empty. Phenotypes are CPIC terms ('Poor Metabolizer'); a gene name written in
    front ('CYP2D6 Poor Metabolizer') is taken off. Returns the files read."""
    files = genotype_files(lake)
    if lake.genotypes and not files:
        raise DataDefect(
            f"PGX_GENOTYPES={lake.genotypes}: no genotype file there (a Parquet or CSV file, a glob, or a folder "
            "of them, with columns person_id, gene, phenotype). Fix the path, or unset PGX_GENOTYPES to run without."
        )
    if not files:
        s.view(
            "genotypes",
            "(SELECT NULL::VARCHAR AS person_id, NULL::VARCHAR AS gene, NULL::VARCHAR AS phenotype LIMIT 0)",
        )
        return []
    source = Source("genotypes", "genotypes")
    for path, present in file_columns(s, files, source).items():
        if missing := [c for c in GENOTYPE_COLUMNS if c not in present]:
            raise DataDefect(
                f"genotypes file {path} has no column {', '.join(missing)}: expected {', '.join(GENOTYPE_COLUMNS)} "
                "(CPIC phenotype terms). Add or rename the column, or unset PGX_GENOTYPES to run without."
            )
    relation = _reader(files, source)
    # The gene in front of a phenotype is cut by position: a regular expression built per row from the
    # gene's name would be compiled per row (7 s per 1.5M rows).
    s.view(
        "genotypes",
        f"""(SELECT DISTINCT person_id, gene,
                    CASE WHEN starts_with(upper(phenotype), gene || ' ') THEN clean_text(phenotype[length(gene) + 2:])
                         ELSE phenotype END AS phenotype
             FROM (SELECT clean_text(person_id) AS person_id, upper(clean_text(gene)) AS gene,
                          clean_text(phenotype) AS phenotype FROM {relation})
             WHERE phenotype IS NOT NULL)""",
    )
    return files

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
error naming the file; an optional column missing from every file of a table reads as NULL, one missing
from some files only (schema drift: renamed or dropped in one delivery) is a clear error naming the file, the
column and the unknown column that looks like its new name. Headers match without regard to case, blanks or a
byte-order mark, and the other spellings in ALIASES read as the column. The mapping itself is SQL:
`sql/formats/<format>/{medical,pharmacy,eligibility,enrollment,linkage}.sql`, each producing one raw
table (raw_medical, raw_pharmacy, raw_eligibility, raw_enrollment, raw_linkage) in our raw layout.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

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


# Other names real extracts give a column, read as it (README / docs/user-guide/input-formats.md, "Other names
# of a column"). One group per column; a format reads every name of a group as the one of the group it uses.
ALIASES: tuple[tuple[str, ...], ...] = (
    ("quantity", "qty", "quantity_dispensed", "dispensed_quantity"),
    ("days_supply", "day_supply", "days_supplied", "days_of_supply"),
    ("ndc", "ndc_code", "ndc11", "national_drug_code"),
    ("fill_date", "dispensing_date", "dispense_date", "date_filled"),
    ("claim_line", "claim_line_number"),
    ("paid_amount", "paid_amt", "amount_paid"),
)


def header_key(name: str) -> str:
    """A column name as headers are matched: case, surrounding blanks and a byte-order mark do not count."""
    return name.strip().lstrip("\ufeff").strip().lower()


def used_names(source: Source) -> dict[str, tuple[str, ...]]:
    """Each column the source reads -> its names in order of preference: its own, the source's older names
    (Source.aliases), then the other names of its ALIASES group that the source does not read itself."""
    used = (*source.required, *source.optional)
    out = {}
    for column in used:
        group = next((g for g in ALIASES if column in g), ())
        out[column] = tuple(dict.fromkeys((column, *source.aliases.get(column, ()),
                                           *(n for n in group if n not in used))))  # fmt: skip
    return out


@dataclass(frozen=True)
class RawFormat:
    name: str
    sources: tuple[Source, ...]


def _tuva(stem: str, required: tuple[str, ...], optional: tuple[str, ...], with_filename: bool = False) -> Source:
    """A table of the Tuva input layer: `<stem>.csv`, `.parquet` or a folder of either; the person column
    is `person_id` (Tuva >= 0.13) or `patient_id` (before)."""
    return Source(
        f"tuva_{stem}",
        f"Tuva {stem}",
        (f"{stem}.csv", f"{stem}.parquet", f"{stem}/*.parquet", f"{stem}/*.csv"),
        required=required,
        optional=dict.fromkeys(optional, "VARCHAR"),
        aliases={"person_id": ("patient_id",)},
        with_filename=with_filename,
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
                with_filename=True,  # claims_intake_code_reject_rate judges each file
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
                with_filename=True,
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
                with_filename=True,  # claims_intake_code_reject_rate judges each file
            ),  # fmt: skip
            _tuva(
                "pharmacy_claim",
                ("claim_id", "person_id", "dispensing_date", "ndc_code"),
                ("claim_line_number", "member_id", "payer", "quantity", "days_supply", "paid_amount"),
                with_filename=True,
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
    """The top-level columns of each file (Parquet footers, CSV headers). A file that cannot be read as what
    it claims to be stops here, named, before any query reads it."""
    if all(f.endswith(".parquet") for f in files):
        listing = ", ".join(quote(f) for f in files)
        try:
            with s.doing(f"{source.label}: reading the Parquet footers"):
                rows = s.execute(f"SELECT file_name, name, num_children FROM parquet_schema([{listing}])").fetchall()
        except DataDefect:
            raise unreadable(s, files, source) from None
        elements: dict[str, list[tuple[str, int]]] = {f: [] for f in files}
        for path, name, children in rows:
            elements.setdefault(path, []).append((name, children or 0))
        return {path: _top_level(schema) for path, schema in elements.items()}
    out = {}
    for path in files:
        try:
            with s.doing(f"{source.label}: reading the header of {path}"):
                # not the `filename` the reader adds
                out[path] = {name for name, _type in s.columns(_reader([path], replace(source, with_filename=False)))}
        except DataDefect:
            raise unreadable(s, [path], source) from None
    return out


def _top_level(schema: list[tuple[str, int]]) -> set[str]:
    """The columns of a Parquet schema, flattened depth-first as (name, children): the root's children, not
    the root itself nor the fields inside a list or struct column."""
    names, i = set(), 1
    while i < len(schema):
        names.add(schema[i][0])
        pending, i = schema[i][1], i + 1
        while pending:  # the column's subtree
            pending, i = pending - 1 + schema[i][1], i + 1
    return names


def matched_columns(source: Source, columns_of_file: set[str]) -> dict[str, str]:
    """Each column the source reads that the file has -> its name in the file (ALIASES, header_key)."""
    by_key: dict[str, str] = {}
    for name in sorted(columns_of_file):
        by_key.setdefault(header_key(name), name)
    out = {}
    for column, names in used_names(source).items():
        found = next((by_key[header_key(n)] for n in names if header_key(n) in by_key), None)
        if found is not None:
            out[column] = found
    return out


def _renamed(source: Source, per_file: dict[str, set[str]], path: str, missing: list[str]) -> str:
    """'; it has an unknown column qnty, which looks like quantity (renamed?)' for each column the source does
    not read whose name is close to a missing column's (difflib), else ''. A column only this file of several
    has is the likely new name (ratio 0.6 will do: qnty / quantity); any other must be closer (0.8), so that
    death_date is not offered for birth_date."""
    known = {header_key(n) for names in used_names(source).values() for n in names}
    elsewhere = {header_key(c) for f, columns in per_file.items() if f != path for c in columns}
    hints = []
    for name in sorted(c for c in per_file[path] if header_key(c) not in known):
        score, like = max(((difflib.SequenceMatcher(None, header_key(name), header_key(n)).ratio(), column)
                           for column in missing for n in used_names(source)[column]), default=(0.0, ""))  # fmt: skip
        if score >= (0.6 if len(per_file) > 1 and header_key(name) not in elsewhere else 0.8):
            hints.append(f"; it has an unknown column {name}, which looks like {like} (renamed?)")
    return "".join(hints)


def check_columns(fmt: RawFormat, source: Source, per_file: dict[str, set[str]]) -> dict[str, dict[str, str]]:
    """Per file, its name of each column the source reads (matched_columns). Every file must have every
    required column, and every column that another file of the table has (else that column would read as
    NULL for this file's rows alone: a column renamed or dropped in one delivery). Raises a DataDefect naming
    the first file that does not, its missing columns and an unknown column that looks like one of them."""
    matched = {path: matched_columns(source, columns) for path, columns in per_file.items()}
    for path in per_file:
        missing = [c for c in source.required if c not in matched[path]]
        if missing:
            others = sum(1 for f in per_file if f != path and set(missing) - set(matched[f]))
            raise DataDefect(
                f"{source.label} file {path} has no column {', '.join(_with_aliases(c, source) for c in missing)}"
                + (f" (nor do {others} other file(s))" if others else "")
                + _renamed(source, per_file, path, missing)
                + f": the {fmt.name} format needs {', '.join(_with_aliases(c, source) for c in source.required)} "
                "(docs/user-guide/input-formats.md). Add or rename the column in the file and re-run."
            )
    n = len(per_file) - 1
    drift = {path: {c: held for c in source.optional if c not in matched[path]
                    if (held := sum(1 for f in per_file if f != path and c in matched[f]))}
             for path in per_file}  # fmt: skip
    for path, held in drift.items():
        if not held:
            continue
        if set(held.values()) == {n}:
            what = f"{', '.join(held)}, which the other {n} file(s) of the table have"
        else:
            what = ", ".join(f"{c} (which {k} of the other {n} file(s) of the table have)" for c, k in held.items())
        more = sum(1 for f, h in drift.items() if h and f != path)
        raise DataDefect(
            f"{source.label} file {path} has no column {what}"
            + _renamed(source, per_file, path, list(held))
            + (f" ({more} other file(s) also lack columns the rest have)" if more else "")
            + ". A column some files of a table have and others lack would read as NULL for those files' rows: "
            "rename or add the column in the file (docs/user-guide/input-formats.md lists the other names read "
            "as each column) and re-run."
        )
    return matched


def unreadable(s: Session, files: list[str], source: Source) -> DataDefect:
    """The first of `files` that cannot be read whole, as a message naming it (each file read in full:
    only on the way to an error)."""
    import duckdb  # here, not at the top: `import duckdb` starts DuckDB's threads (forksafe.py)

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
    import duckdb  # here, not at the top: `import duckdb` starts DuckDB's threads (forksafe.py)

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
        matched = check_columns(fmt, source, file_columns(s, files, source))
        relation = _reader(files, source)
        # Declared order (the SQL gathers numbered columns such as HCPCS_CD_1..45 by pattern).
        absent = {c: f'NULL::{t} AS "{c}"' for c, t in source.optional.items()
                  if not any(c in m for m in matched.values())}  # fmt: skip
        # A column under another name in some file (an older name, an alias, blanks around it): read from each
        # of its names (union_by_name already joins names that differ in case only, as DuckDB binds them).
        names: dict[str, dict[str, str]] = {}
        for m in matched.values():
            for c, name in m.items():
                names.setdefault(c, {}).setdefault(name.lower(), name)
        named = {c: f'coalesce({", ".join(quote_ident(n) for n in by.values())}) AS "{c}"'
                 for c, by in names.items() if list(by) != [c.lower()]}  # fmt: skip

        if source.pgx_table:
            # the files as they are, a column under another name read under its own
            drop = ", ".join(quote_ident(n) for c in named for n in names[c].values())
            columns = [f"* EXCLUDE ({drop})" if drop else "*", *absent.values(), *named.values()]
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
    sources = {source.pgx_table: source for source in FORMATS["pgx"].sources}
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
            with _preflight_session(lake) as s:
                errors = _column_errors(s, FORMATS["pgx"], sources[table], lake.files(chosen[0]))
            lines += errors
            ok &= not errors
        else:
            ok = False
            tried = ", ".join(p for p, _, _ in found)
            lines.append(f"     ERROR: no files for {table}; tried {tried}")
    return ok, lines


@contextmanager
def _preflight_session(lake: LakeResource) -> Iterator[Session]:
    from pgx_dagster.resources import build_resources

    # httpfs and the S3 secret when the files are on S3 (Parquet footers are read through DuckDB)
    worker = build_resources(raw_root=lake.raw_root, lake_root=lake.lake_root)["duckdb"]
    with worker.process_config_and_initialize().global_session() as s:
        yield s


def _column_errors(s: Session, fmt: RawFormat, source: Source, files: list[str]) -> list[str]:
    """The error register_raw would raise for the columns of a source's files (check_columns), as a line."""
    try:
        check_columns(fmt, source, file_columns(s, files, source))
    except DataDefect as error:
        return [f"     ERROR: {error.description}"]
    return []


def _validate_apcd(lake: LakeResource) -> tuple[bool, list[str]]:
    """The APCD release's files and elements (apcd_release.validate), then the optional linkage file."""
    with _preflight_session(lake) as s:
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
        if files:
            with _preflight_session(lake) as s:
                errors = _column_errors(s, fmt, source, files)
            lines += errors
            ok &= not errors
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
             FROM (SELECT id_text(person_id) AS person_id, upper(clean_text(gene)) AS gene,
                          clean_text(phenotype) AS phenotype FROM {relation})
             WHERE phenotype IS NOT NULL)""",
    )
    return files

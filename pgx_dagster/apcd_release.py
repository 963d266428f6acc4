"""The apcd input format (PGX_RAW_FORMAT=apcd): a state All-Payer Claims Database release as it comes.

Its fields are numbered after the APCD Council's common layout: medical claims `MCnnn`, pharmacy claims
`PCnnn`, member eligibility `MEnnn` (one row per member-month) and, in some states, pharmacy eligibility
`PEnnn`. Which element is read for what is data, not code: sql/formats/apcd/elements.csv (or a state's own
copy, PGX_APCD_ELEMENTS), one row per role with its elements in order of preference.

Files, under every folder of PGX_RAW_ROOT: a folder per table (`MC/`, `mc/`, ...) or files whose name starts
with the table's code (`MC_201901.txt`, `me2019.psv`); `.txt .csv .psv .tsv .dat` (optionally `.gz`) or
`.parquet`; as many per table as the release has (one per submission month is the norm). Text files are
pipe-, comma- or tab-delimited (detected per file from its first line, or PGX_RAW_DELIMITER); a file's
first line is its header when it names elements (`MC059`, or with a state's suffix `MC059_FDATE`, any case),
otherwise PGX_APCD_LAYOUT names its columns in order. Each file is read by its own column names, so files of
different header styles or layouts are read together.

This module finds and inspects the files and registers one view per table (apcd_me, apcd_pe, apcd_mc,
apcd_pc) with a column per role; the mapping to our raw layout is SQL, sql/formats/apcd/*.sql.
"""

from __future__ import annotations

import csv
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from pgx_dagster.duck import DataDefect, Session, quote, redact
from pgx_dagster.lake import LakeResource
from pgx_dagster.settings import SettingError

ELEMENTS_FILE = Path(__file__).resolve().parent.parent / "sql" / "formats" / "apcd" / "elements.csv"

# The tables of a release: code -> (view, label in the user's words, raw override of PGX_RAW_*).
TABLES: dict[str, tuple[str, str, str]] = {
    "ME": ("apcd_me", "APCD member eligibility (ME)", "member_eligibility"),
    "PE": ("apcd_pe", "APCD pharmacy eligibility (PE)", ""),
    "MC": ("apcd_mc", "APCD medical claims (MC)", "medical_claims"),
    "PC": ("apcd_pc", "APCD pharmacy claims (PC)", "pharmacy_claims"),
}
OPTIONAL_TABLES = ("PE",)  # not every state releases pharmacy eligibility
# Roles whose every element is read, gathered in this order into the list column `diagnoses`: the first is
# the claim's principal diagnosis. Every other role reads the first of its elements a file has.
DIAGNOSIS_ROLES = (
    "principal_diagnosis", "diagnosis", "admitting_diagnosis", "reason_for_visit", "external_cause", "other_diagnosis"
)  # fmt: skip
ELEMENT = re.compile(r"([A-Z]{2})(\d{3}[A-Z]?)(?:[_\s.-].*)?")
TEXT_SUFFIXES = (".txt", ".csv", ".psv", ".tsv", ".dat")
DELIMITERS = {"pipe": "|", "comma": ",", "tab": "\t"}
DELIMITER_NAMES = {v: k for k, v in DELIMITERS.items()}


@dataclass(frozen=True)
class Role:
    table: str
    name: str
    elements: tuple[str, ...]
    required: bool
    meaning: str


@dataclass(frozen=True)
class FileSpec:
    """How one file of a table is read: as Parquet, or as text with its delimiter and header (or the layout's
    names), and which of its columns holds which element."""

    path: str
    table: str
    parquet: bool
    delimiter: str
    header: bool
    columns: tuple[str, ...]
    elements: tuple[tuple[str, str], ...]  # (element, column as in the file)

    @property
    def shape(self) -> tuple:
        return (self.parquet, self.delimiter, self.header, self.columns)

    def describe(self) -> str:
        if self.parquet:
            return "Parquet"
        how = "header" if self.header else "no header: columns from PGX_APCD_LAYOUT"
        return f"{DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))}-delimited text, {how}"


def element_of(name: str) -> str | None:
    """The APCD element a column name stands for: `MC059`, `mc059_fdate`, `MC005A_VER` -> MC059 / MC005A."""
    match = ELEMENT.fullmatch(name.strip().strip('"').upper())
    return match.group(1) + match.group(2) if match else None


def roles(lake: LakeResource) -> dict[str, list[Role]]:
    """The element map, per table: PGX_APCD_ELEMENTS, else sql/formats/apcd/elements.csv."""
    path = lake.apcd_elements or str(ELEMENTS_FILE)
    text = lake.read_text(path)
    if text is None:
        raise SettingError(f"PGX_APCD_ELEMENTS={path}: no such file (layout of {ELEMENTS_FILE.name}).")
    reader = csv.DictReader(io.StringIO(text))
    wanted = {"file", "role", "elements", "required", "meaning"}
    if not wanted <= set(reader.fieldnames or ()):
        raise SettingError(f"{path}: expected the columns {', '.join(sorted(wanted))} (layout of {ELEMENTS_FILE})")
    out: dict[str, list[Role]] = {table: [] for table in TABLES}
    for line, row in enumerate(reader, start=2):
        table = (row["file"] or "").strip().upper()
        elements = tuple((row["elements"] or "").upper().split())
        bad = [e for e in elements if element_of(e) != e or not e.startswith(table)]
        if table not in TABLES or not elements or bad or row["required"].strip() not in ("yes", "no"):
            raise SettingError(
                f"{path} line {line}: expected file one of {', '.join(TABLES)}, elements of that file "
                f"(e.g. {table or 'MC'}059) separated by spaces, required yes or no; got {dict(row)}"
            )
        out[table].append(Role(table, row["role"].strip(), elements, row["required"].strip() == "yes", row["meaning"]))
    return out


# ---- finding the files -----------------------------------------------------------------------------------
def _is_data_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    name = name[:-3] if name.endswith(".gz") else name
    # a column layout beside the data (mc_columns.csv, as PGX_APCD_LAYOUT has them) is not data
    return name.endswith((".parquet", *TEXT_SUFFIXES)) and not re.fullmatch(r"(mc|pc|me|pe)_columns\.csv", name)


def table_files(lake: LakeResource, table: str) -> tuple[list[str], list[str]]:
    """(files, places tried) of one table: its PGX_RAW_* override, else under every raw folder a folder named
    after the table (any case) or files whose name starts with its code."""
    override = TABLES[table][2]
    if override and lake.raw_overrides.get(override):
        given = lake.raw_overrides[override].rstrip("/")
        # a folder (no glob, not a data file itself): the data files in it
        pattern = given if _is_data_file(given) or re.search(r"[*?\[]", given) else f"{given}/*"
        return [f for f in lake.files(pattern) if _is_data_file(f)], [pattern]
    code = table.lower()
    named = re.compile(rf"{code}(?![a-z])[^/]*", re.IGNORECASE)
    found: list[str] = []
    tried: list[str] = []
    for root in lake.raw_roots():
        tried += [f"{root}/{table}/*", f"{root}/{table}/*/*", f"{root}/{table}*"]
        for path in lake.files(f"{root}/*/*/*") + lake.files(f"{root}/*/*") + lake.files(f"{root}/*"):
            rel = path[len(root) + 1 :]
            folder, _, name = rel.rpartition("/")
            in_folder = folder.split("/")[0].lower() == code  # the table's folder, or a folder in it (MC/2019/)
            if _is_data_file(path) and (in_folder or (not folder and named.fullmatch(name))):
                found.append(path)
    return sorted(set(found)), tried


# ---- inspecting a file -----------------------------------------------------------------------------------
def first_line(lake: LakeResource, path: str) -> str:
    data = lake.head(path)
    if path.lower().endswith(".gz"):
        data = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(data)
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    return text.splitlines()[0] if text else ""


def unique_names(fields: list[str]) -> list[str]:
    """A first line's fields as column names: blank ones (a delimiter after the last field) and repeats of a name
    made unique, so that the file can be read; an element code is never among them twice (checked after)."""
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(fields):
        name = name or f"_blank_{i + 1}"
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 or element_of(name) else f"{name}_{seen[name]}")
    return out


def layout_columns(lake: LakeResource, table: str) -> list[tuple[str, str]] | None:
    """(column, element) in field order from PGX_APCD_LAYOUT/<table>_columns.csv, or None."""
    if not lake.apcd_layout:
        return None
    path = f"{lake.apcd_layout.rstrip('/')}/{table.lower()}_columns.csv"
    text = lake.read_text(path)
    if text is None:
        return None
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "column" not in rows[0]:
        raise SettingError(f"PGX_APCD_LAYOUT: {path} needs a column `column` (and `element`), one row per field")
    return [(r["column"].strip(), (r.get("element") or "").strip().upper() or element_of(r["column"]) or "")
            for r in rows]  # fmt: skip


def inspect(lake: LakeResource, s: Session, path: str, table: str) -> FileSpec:
    """How to read one file, or a one-line error naming it."""
    label = TABLES[table][1]
    if path.lower().endswith(".parquet"):
        try:
            names = [r[0] for r in s.con.execute(f"SELECT name FROM parquet_schema({quote(path)})").fetchall()[1:]]
        except Exception as error:  # noqa: BLE001 - any failure to read the footer names the file
            raise DataDefect(f"{label} file {path} cannot be read as Parquet: {str(error).splitlines()[0]}") from None
        return _spec(path, table, True, "", True, names)
    line = first_line(lake, path)
    if not line.strip():
        raise DataDefect(f"{label} file {path} is empty (no first line): remove it or replace it with the full file.")
    if lake.raw_delimiter != "auto":
        delimiter = DELIMITERS[lake.raw_delimiter]
    else:
        counts = {d: line.count(d) for d in DELIMITERS.values()}
        delimiter = max(counts, key=lambda d: counts[d])
        if not counts[delimiter]:
            raise DataDefect(
                f"{label} file {path}: its first line has no pipe, comma or tab, so its delimiter cannot be told; "
                "set PGX_RAW_DELIMITER (pipe, comma or tab)."
            )
    raw_fields = [f.strip().strip('"') for f in line.split(delimiter)]
    fields = unique_names(raw_fields)
    named = [f for f in raw_fields if element_of(f)]
    if len(named) * 2 >= len([f for f in raw_fields if f]):
        return _spec(path, table, False, delimiter, True, fields)
    layout = layout_columns(lake, table)
    if layout is None:
        where = f"{lake.apcd_layout}/{table.lower()}_columns.csv" if lake.apcd_layout else "PGX_APCD_LAYOUT"
        raise DataDefect(
            f"{label} file {path} has no header (its first line is data) and no layout names its fields: set "
            f"{where} to a folder with {table.lower()}_columns.csv (columns `column`, `element`, one row per field in "
            "file order), or add a header line of element codes."
        )
    names = [c for c, _e in layout]
    if len(fields) == len(names) + 1 and not raw_fields[-1]:  # a delimiter after the last field
        names.append("_trailing_delimiter")
    if len(fields) != len(names):
        raise DataDefect(
            f"{label} file {path} has {len(fields)} fields on its first line, its layout "
            f"({lake.apcd_layout}/{table.lower()}_columns.csv) {len(layout)}: the layout is not this file's."
        )
    elements = {c: e for c, e in layout}
    return _spec(path, table, False, delimiter, False, names, elements)


def _spec(path: str, table: str, parquet: bool, delimiter: str, header: bool, columns: list[str],
          given: dict[str, str] | None = None) -> FileSpec:  # fmt: skip
    label = TABLES[table][1]
    pairs: dict[str, str] = {}
    for column in columns:
        element = (given or {}).get(column) or element_of(column)
        if not element:
            continue
        if element in pairs:
            raise DataDefect(
                f"{label} file {path}: columns {pairs[element]!r} and {column!r} are both element {element}; "
                "a file names each element once."
            )
        pairs[element] = column
    prefixes = {e[:2] for e in pairs}
    if pairs and table not in prefixes:
        raise DataDefect(
            f"{label} file {path}: its columns are elements of {', '.join(sorted(prefixes))}, not {table}: it is in "
            f"the place of the {table} files. Move it to its own table's folder."
        )
    return FileSpec(path, table, parquet, delimiter, header, tuple(columns), tuple(sorted(pairs.items())))


def missing_required(spec: FileSpec, table_roles: list[Role]) -> list[Role]:
    have = {e for e, _c in spec.elements}
    return [r for r in table_roles if r.required and not have & set(r.elements)]


def missing_error(spec: FileSpec, missing: list[Role], others: int) -> DataDefect:
    label = TABLES[spec.table][1]
    what = "; ".join(f"{' or '.join(r.elements)} ({r.name}: {r.meaning})" for r in missing)
    return DataDefect(
        f"{label} file {spec.path} has no element {what}"
        + (f" (nor do {others} other file(s))" if others else "")
        + f"; it has {len(spec.elements)} element(s) ({', '.join(e for e, _c in spec.elements[:6])}"
        + ("..." if len(spec.elements) > 6 else "")
        + "). Add the field, or map the element your state uses for it in a copy of sql/formats/apcd/elements.csv "
        "named by PGX_APCD_ELEMENTS (`pgx validate-inputs` lists what each file has)."
    )


def optional_groups(table_roles: list[Role]) -> dict[str, tuple[str, ...]]:
    """What an optional role reads, by what to call it: its elements (any one will do), and every diagnosis
    element as one group (an ICD-9-era file has MC041.., an ICD-10-era one MC200..: both are diagnoses)."""
    groups = {f"{' or '.join(r.elements)} ({r.name}: {r.meaning})": r.elements
              for r in table_roles if not r.required and r.name not in DIAGNOSIS_ROLES}  # fmt: skip
    dx = tuple(e for r in table_roles if r.name in DIAGNOSIS_ROLES for e in r.elements)
    if dx:
        groups[f"any diagnosis element ({', '.join(dx[:4])}... {len(dx)} in all)"] = dx
    return groups


def drift_error(specs: list[FileSpec], table_roles: list[Role]) -> DataDefect | None:
    """A file without any element of an optional role that other files of the table have (the role would read
    as empty for its records alone: a field dropped from one submission), named, else None."""
    have = [{e for e, _c in spec.elements} for spec in specs]
    n = len(specs) - 1
    for i, spec in enumerate(specs):
        held = {what: k for what, elements in optional_groups(table_roles).items() if not have[i] & set(elements)
                if (k := sum(1 for j, h in enumerate(have) if j != i and h & set(elements)))}  # fmt: skip
        if not held:
            continue
        what = "; ".join(f"{w}, which {'the other' if k == n else f'{k} of the other'} {n} file(s) of the table have"
                         for w, k in held.items())  # fmt: skip
        return DataDefect(
            f"{TABLES[spec.table][1]} file {spec.path} has no element {what}. An element some files of a table have "
            "and others lack would read as empty for those files' records: add the field to the file, or, if the "
            "release lacks it in some files, leave the element out of a copy of sql/formats/apcd/elements.csv named "
            "by PGX_APCD_ELEMENTS (`pgx validate-inputs` lists what each file has)."
        )
    return None


# ---- reading ---------------------------------------------------------------------------------------------
def file_relation(spec: FileSpec) -> str:
    return group_relation([spec])


def group_relation(specs: list[FileSpec]) -> str:
    """One read over files of the same shape: every element as text, under its element code."""
    first = specs[0]
    listing = ", ".join(quote(s.path) for s in specs)
    select = ", ".join(f'CAST("{c.replace(chr(34), chr(34) * 2)}" AS VARCHAR) AS "{e}"' for e, c in first.elements)
    if first.parquet:
        source = f"read_parquet([{listing}], hive_partitioning = false)"
    else:
        # Every field as text (ids, NDCs and zip codes keep their leading zeros) under the names the first line
        # (or the layout) gave, nothing sniffed: a release has hundreds of files, and sniffing each again whenever
        # a view over them is bound cost seconds per query. A double quote opens a quoted field (RFC 4180).
        columns = ", ".join(f"{quote(c)}: 'VARCHAR'" for c in first.columns)
        source = (f"read_csv([{listing}], delim = {quote(first.delimiter)}, header = {str(first.header).lower()}, "
                  f"auto_detect = false, columns = {{{columns}}}, quote = '\"', escape = '\"')")  # fmt: skip
    return f"(SELECT {select or 'NULL AS _none'} FROM {source})"


def table_view(specs: list[FileSpec], table_roles: list[Role]) -> str:
    """The SELECT of a table's view: one text column per role (the first of its elements present), and for
    medical claims the list `diagnoses`."""
    present = {e for spec in specs for e, _c in spec.elements}
    groups: dict[tuple, list[FileSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.shape, []).append(spec)
    union = " UNION ALL BY NAME ".join(f"SELECT * FROM {group_relation(g)}" for g in groups.values())
    columns = []
    for role in table_roles:
        if role.name in DIAGNOSIS_ROLES:
            continue
        have = [f'"{e}"' for e in role.elements if e in present]
        columns.append(f"{'coalesce(' + ', '.join(have) + ')' if have else 'NULL::VARCHAR'} AS {role.name}")
    if any(r.name in DIAGNOSIS_ROLES for r in table_roles):
        order = {name: i for i, name in enumerate(DIAGNOSIS_ROLES)}
        dx = [e for r in sorted((r for r in table_roles if r.name in order), key=lambda r: order[r.name])
              for e in r.elements if e in present]  # fmt: skip
        listed = f"list_filter([{', '.join(f'{chr(34)}{e}{chr(34)}' for e in dx)}], d -> clean_text(d) IS NOT NULL)"
        columns.append(f"{listed if dx else '[]::VARCHAR[]'} AS diagnoses")
    return f"(SELECT {', '.join(columns)} FROM ({union}))"


def empty_view(table_roles: list[Role]) -> str:
    columns = [f"NULL::VARCHAR AS {r.name}" for r in table_roles if r.name not in DIAGNOSIS_ROLES]
    if any(r.name in DIAGNOSIS_ROLES for r in table_roles):
        columns.append("[]::VARCHAR[] AS diagnoses")
    return f"(SELECT {', '.join(columns)} LIMIT 0)"


def damaged(s: Session, spec: FileSpec) -> DataDefect | None:
    """The error naming `spec`'s file when it cannot be read whole (each line decoded: only on the way to an
    error), else None."""
    import duckdb  # here, not at the top: `import duckdb` starts DuckDB's threads (forksafe.py)

    try:
        s.con.execute(f"SELECT sum(hash(t)) FROM {file_relation(spec)} t").fetchone()
    except duckdb.Error as error:
        return DataDefect(
            f"{TABLES[spec.table][1]} file {spec.path} cannot be read as {spec.describe()}: {redact(str(error))}. The "
            "file is damaged or not what its name says: replace it with a good copy (or remove it) and re-run."
        )
    return None


# The specs of the last registration, by path: to name a damaged file after a query failed (raw_inputs).
LAST_SPECS: dict[str, FileSpec] = {}


def inspect_table(
    lake: LakeResource, s: Session, table: str, table_roles: list[Role]
) -> tuple[list[FileSpec], list[str]]:
    """Every file of a table inspected, the required elements checked per file. Returns (specs, tried)."""
    files, tried = table_files(lake, table)
    specs = [inspect(lake, s, path, table) for path in files]
    for spec in specs:
        if missing := missing_required(spec, table_roles):
            others = sum(1 for o in specs if o is not spec and missing_required(o, table_roles))
            raise missing_error(spec, missing, others)
    if drift := drift_error(specs, table_roles):
        raise drift
    return specs, tried


def register_apcd(s: Session, lake: LakeResource, stage_in: str | None = None) -> dict[str, list[str]]:
    """Views apcd_me, apcd_pe, apcd_mc, apcd_pc: one row per record, a text column per role. Returns the
    files each read, by label. `stage_in` (a scratch folder): each table's roles are first written there as
    Parquet, read once from the text files - for a step that reads a table several times (person_index reads
    the member-months for eligibility, enrolment, drug coverage, persons and ages: seven parses of the text)."""
    element_roles = roles(lake)
    used: dict[str, list[str]] = {}
    LAST_SPECS.clear()
    for table, (view, label, override) in TABLES.items():
        specs, tried = inspect_table(lake, s, table, element_roles[table])
        if not specs and table in OPTIONAL_TABLES:
            s.view(view, empty_view(element_roles[table]))
            used[label] = []
            continue
        if not specs:
            from pgx_dagster.resources import RAW_OVERRIDE_VARS

            also = f" or set {RAW_OVERRIDE_VARS[override]}" if override else ""
            raise DataDefect(
                f"no {label} files under PGX_RAW_ROOT={lake.raw_root} (PGX_RAW_FORMAT=apcd): expected a folder "
                f"{table}/ or files named {table}*.txt/.csv/.psv/.parquet; tried {', '.join(tried)}. Put the "
                f"files there{also} (`pgx validate-inputs` shows what is found)."
            )
        LAST_SPECS.update({spec.path: spec for spec in specs})
        s.view(view, table_view(specs, element_roles[table]), f"reading the {label} files")
        used[label] = [spec.path for spec in specs]
        if stage_in:
            staged = f"{stage_in}/{view}.parquet"
            try:
                s.execute(f"COPY (SELECT * FROM {view}) TO {quote(staged)} (FORMAT parquet)")
            except DataDefect:
                raise next(filter(None, (damaged(s, spec) for spec in specs)), None) or DataDefect(
                    f"the {label} files could not be read together; each reads alone"
                ) from None
            s.view(view, f"read_parquet({quote(staged)})", f"reading the {label} files")
    # Whether the release says when members had drug coverage at all (sql/formats/apcd/drug_coverage.sql): read
    # up to the first value, and a constant to the SQL, so that its other branch is never read.
    try:
        stated = s.scalar("SELECT EXISTS (SELECT 1 FROM apcd_me WHERE clean_text(drug_coverage) IS NOT NULL LIMIT 1) "
                          "OR EXISTS (SELECT 1 FROM apcd_pe LIMIT 1)")  # fmt: skip
    except DataDefect:
        raise next(filter(None, (damaged(s, spec) for spec in LAST_SPECS.values())), None) or DataDefect(
            "the APCD eligibility files could not be read together; each reads alone"
        ) from None
    s.set_variables({"drug_coverage_stated": bool(stated)})
    return used


def validate(lake: LakeResource, s: Session) -> tuple[bool, list[str]]:
    """The preflight of the apcd format: per table the files found, how each shape is read, which role reads
    which element, and what is missing."""
    element_roles = roles(lake)
    lines = [f"Raw inputs (apcd format) under {lake.raw_root}:",
             f"  element map: {lake.apcd_elements or ELEMENTS_FILE}"]  # fmt: skip
    ok = True
    for table, (_view, label, _override) in TABLES.items():
        files, tried = table_files(lake, table)
        lines.append(f"  {label}: {len(files)} file(s)")
        if not files:
            optional = table in OPTIONAL_TABLES
            lines.append(f"     {'(none: optional)' if optional else 'ERROR: no files'}; tried {', '.join(tried)}")
            ok &= optional
            continue
        specs = []
        for path in files:
            try:
                specs.append(inspect(lake, s, path, table))
            except (DataDefect, SettingError) as error:
                lines.append(f"     ERROR: {error}")
                ok = False
        shapes: dict[tuple, list[FileSpec]] = {}
        for spec in specs:
            shapes.setdefault(spec.shape, []).append(spec)
        for group in shapes.values():
            names = ", ".join(g.path.rsplit("/", 1)[-1] for g in group[:3]) + (" ..." if len(group) > 3 else "")
            first = group[0]
            lines.append(f"    {len(group)} file(s), {first.describe()}, {len(first.elements)} element(s): {names}")
        present = {e for spec in specs for e, _c in spec.elements}
        for role in element_roles[table]:
            have = [e for e in role.elements if e in present]
            if role.name in DIAGNOSIS_ROLES:
                lines.append(f"     {role.name}: {len(have)} of {len(role.elements)} element(s)")
                continue
            shown = have[0] if have else ("MISSING" if role.required else "absent (read as empty)")
            lines.append(f"     {role.name} <- {shown}")
        for spec in specs:
            if missing := missing_required(spec, element_roles[table]):
                lines.append(f"     ERROR: {missing_error(spec, missing, 0)}")
                ok = False
        if drift := drift_error(specs, element_roles[table]):
            lines.append(f"     ERROR: {drift.description}")
            ok = False
        drug_elements = {e for r in element_roles[table] if r.name == "drug_coverage" for e in r.elements}
        if table == "ME" and not drug_elements & present and not table_files(lake, "PE")[0]:
            stated = "/".join(sorted(drug_elements))
            lines.append(f"     note: no pharmacy coverage stated (no {stated}, no PE files): every enrolled month "
                         "counts as a month of drug coverage")  # fmt: skip
    return ok, lines

"""The apcd input format (PGX_RAW_FORMAT=apcd): a state APCD release read by element code, whatever its header
style, delimiter, layout or file format; member-month enrolment; persons from the cross-payer key, a linkage
file or the member id; birth years from ages; every diagnosis-bearing element. The real column layout of a
Maine (MHDO) release, ../shared/data/apcd_maine_mhdo/, is read with the shipped element map."""

import csv
import gzip
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest
from dagster import Failure

from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.lake import LakeResource
from pgx_dagster.raw_inputs import RAW_VIEWS, register_raw, validate_inputs
from pgx_dagster_tests.helpers import sample_data

MAINE = sample_data() / "apcd_maine_mhdo"

ME_HEADER = ["ME001_PAYER", "ME107_MEMBER", "ME909_MEMSSN", "ME004_YEAR", "ME005_MONTH", "ME013_GENDER",
             "ME016_PATST", "ME017_PATZIP", "ME018_MEDICAL", "ME019_RX", "ME901_AGE"]  # fmt: skip
MC_FIELDS = ["payer", "member", "key", "claim", "line", "version", "date", "cpt", "dx1", "ecode", "prindx", "age"]
MC_ELEMENTS = ["MC001", "MC137", "MC910", "MC004", "MC005", "MC005A", "MC059", "MC055", "MC041", "MC040", "MC200",
               "MC901"]  # fmt: skip
PC_ELEMENTS = ["PC001", "PC107", "PC909", "PC004", "PC005", "PC026", "PC032", "PC033", "PC034", "PC901"]


def write(path: Path, header: list[str] | None, rows: list[list], delimiter: str = "|") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([delimiter.join(header)] if header else []) + [delimiter.join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def me_row(payer, member, key, year, month, age, medical="Y", rx="Y", sex="F"):
    return [payer, member, key, year, month, sex, "ME", "04101", medical, rx, age]


def release(root: Path) -> Path:
    """A small release in three header styles and three delimiters: person K1 under two payers (member ids M1,
    X9), person M2 without a key; M1 has no coverage in 2019-04 (a gap) and no drug coverage in 2019-02."""
    me = [me_row("P1", "M1", "K1", 2019, m, 40 if m < 6 else 41, rx="N" if m == 2 else "Y") for m in (1, 2, 3, 5, 6, 7)]
    me += [me_row("P2", "X9", "K1", 2019, 8, 41), me_row("P1", "M2", "", 2019, 1, 30, sex="M")]
    write(root / "ME" / "ME_201901.txt", ME_HEADER, me)
    # bare element codes, lower case, comma-delimited
    write(root / "MC" / "mc2019.csv", [e.lower() for e in MC_ELEMENTS], [
        ["P1", "M1", "K1", "C1", 1, 0, "20190115", "99283", "", "E8500", "", 40],
        ["P1", "M2", "", "C2", 1, 0, "20190120", "99213", "3004", "", "", 30],
    ], delimiter=",")  # fmt: skip
    write(root / "PC" / "PC_2019.tsv", [f"{e}_X" for e in PC_ELEMENTS],
          [["P1", "M1", "K1", "R1", 1, "00406051205", "20190201", 30, 10, 40]], delimiter="\t")  # fmt: skip
    return root


def lake_of(root: Path, **kw) -> LakeResource:
    return LakeResource(raw_root=str(root), raw_format="apcd", extract_date="2020-06-30", **kw)


def raw(lake: LakeResource, query: str | None = None):
    with DuckDBWorker().session() as s:
        register_raw(s, lake)
        if query:
            return s.rows(query)
        return {view: s.scalar(f"SELECT count(*) FROM {view}") for view in RAW_VIEWS}


def person_index(lake: LakeResource, stage_in: str | None = None) -> list[dict]:
    with DuckDBWorker().session() as s:
        register_raw(s, lake, stage_in=stage_in)
        s.set_variables({"extract_date": lake.extract_day(), "min_year": 2016, "max_year": 2020})
        s.model_table("eligibility", "intake/eligibility")
        s.model_table("person_index", "intake/person_index")
        s.model_table("observation_period", "intake/observation_period")
        return s.rows("SELECT * FROM person_index ORDER BY payer_id, member_id"), s.rows(
            "SELECT * FROM observation_period ORDER BY ALL"
        )


def basis_of(lake: LakeResource) -> dict[str, int]:
    from pgx_dagster.stages.intake import person_basis

    with DuckDBWorker().session() as s:
        register_raw(s, lake)
        s.set_variables({"extract_date": lake.extract_day(), "min_year": 2016, "max_year": 2020})
        s.model_table("eligibility", "intake/eligibility")
        s.model_table("person_index", "intake/person_index")
        return person_basis(s)


def test_three_header_styles_and_delimiters_read_as_one_layout(tmp_path):
    lake = lake_of(release(tmp_path))
    counts = raw(lake)
    assert counts["raw_eligibility"] == 8 and counts["raw_medical"] == 2 and counts["raw_pharmacy"] == 1
    fill = raw(lake, "SELECT payer_id, member_id, claim_id, fill_date, ndc, quantity, days_supply FROM raw_pharmacy")
    assert fill == [{"payer_id": "P1", "member_id": "M1", "claim_id": "R1", "fill_date": "20190201",
                     "ndc": "00406051205", "quantity": "30", "days_supply": "10"}]  # fmt: skip


def test_external_cause_codes_are_diagnoses_of_the_claim(tmp_path):
    rows = raw(lake_of(release(tmp_path)), "SELECT claim_id, diagnosis_code_1 FROM raw_medical ORDER BY 1")
    assert rows == [{"claim_id": "C1", "diagnosis_code_1": "E8500"}, {"claim_id": "C2", "diagnosis_code_1": "3004"}]


def test_every_diagnosis_element_in_order_principal_first(tmp_path):
    dx = {"MC200": "T400X1A", "MC041": "3004", "MC053": "2967", "MC039": "7895", "MC202": "R109", "MC205": "R51",
          "MC040": "E8502", "MC206": "X42XXXA", "MC252": "Y14XXXA", "MC254": "F1120", "MC300": "Z79891"}  # fmt: skip
    header = ["MC001", "MC137", "MC004", "MC059", *dx]
    write(tmp_path / "MC" / "MC.txt", header, [["P1", "M1", "C9", "20190101", *dx.values()]])
    release(tmp_path / "other")
    for table in ("ME", "PC"):
        shutil.copytree(tmp_path / "other" / table, tmp_path / table)
    row = raw(lake_of(tmp_path), "SELECT * FROM raw_medical")[0]
    got = [row["diagnosis_code_1"], row["diagnosis_code_2"], row["diagnosis_code_3"], *row["other_diagnosis_codes"]]
    assert got == ["T400X1A", "3004", "2967", "7895", "R109", "R51", "E8502", "X42XXXA", "Y14XXXA", "F1120", "Z79891"]


def test_member_months_become_spans_and_a_missing_month_breaks_them(tmp_path):
    lake = lake_of(release(tmp_path))
    enrolment = raw(lake, "SELECT member_id, enrollment_start, enrollment_end FROM raw_enrollment ORDER BY ALL")
    assert [(r["member_id"], r["enrollment_start"], r["enrollment_end"]) for r in enrolment] == [
        ("M1", date(2019, 1, 1), date(2019, 3, 31)),  # April missing: a new span from May
        ("M1", date(2019, 5, 1), date(2019, 7, 31)),
        ("M2", date(2019, 1, 1), date(2019, 1, 31)),
        ("X9", date(2019, 8, 1), date(2019, 8, 31)),
    ]
    drugs = raw(lake, "SELECT member_id, coverage_start, coverage_end FROM raw_drug_coverage ORDER BY ALL")
    assert [(r["member_id"], r["coverage_start"]) for r in drugs if r["member_id"] == "M1"] == [
        ("M1", date(2019, 1, 1)), ("M1", date(2019, 3, 1)), ("M1", date(2019, 5, 1))]  # fmt: skip
    # the person: K1's two member ids; continuous from May (M1) into August (X9) - one period, April a gap
    _index, periods = person_index(lake)
    k1 = [(p["period_start"], p["period_end"]) for p in periods if p["person_id"] == "K1"]
    assert k1 == [(date(2019, 1, 1), date(2019, 3, 31)), (date(2019, 5, 1), date(2019, 8, 31))]


def test_without_any_drug_coverage_stated_every_enrolled_month_is_covered(tmp_path):
    release(tmp_path)
    path = tmp_path / "ME" / "ME_201901.txt"
    rows = [line.split("|") for line in path.read_text().splitlines()]
    rx = rows[0].index("ME019_RX")
    path.write_text("\n".join("|".join(r[:rx] + r[rx + 1 :]) for r in rows) + "\n")
    lake = lake_of(tmp_path)
    spans = "SELECT payer_id, member_id, {0}_start, {0}_end FROM raw_{1} ORDER BY ALL"
    assert raw(lake, spans.format("coverage", "drug_coverage")) == [
        {"payer_id": r["payer_id"], "member_id": r["member_id"], "coverage_start": r["enrollment_start"],
         "coverage_end": r["enrollment_end"]} for r in raw(lake, spans.format("enrollment", "enrollment"))]  # fmt: skip
    ok, lines = validate_inputs(lake)
    assert ok and any("no pharmacy coverage stated" in line for line in lines)


def test_persons_from_the_cross_payer_key_else_the_linkage_file_else_the_member_id(tmp_path):
    release(tmp_path)
    index, _periods = person_index(lake_of(tmp_path))
    assert {(r["member_id"], r["person_id"]) for r in index} == {("M1", "K1"), ("X9", "K1"), ("M2", "member:P1:M2")}
    # a linkage file (no payer column: member ids unique across payers) links the member without a key
    write(tmp_path / "linkage" / "links.csv", ["member_id", "person_id"], [["M2", "L7"], ["M1", "IGNORED"]], ",")
    index, _periods = person_index(lake_of(tmp_path))
    assert {(r["member_id"], r["person_id"]) for r in index} == {("M1", "K1"), ("X9", "K1"), ("M2", "L7")}
    # two keys on one member's records: a linkage conflict, reported and used for nobody
    with (tmp_path / "ME" / "ME_201901.txt").open("a") as f:
        f.write("|".join(str(v) for v in me_row("P1", "M1", "K2", 2019, 9, 41)) + "\n")
    index, _periods = person_index(lake_of(tmp_path))
    assert [r["conflicting_linkage"] for r in index if r["member_id"] == "M1"] == [True]


def test_birth_year_from_ages_with_a_birthday_inside_the_year(tmp_path):
    """Born mid-1978: 40 before the birthday in 2019, 41 after it - candidates 1979 and 1978, the smaller."""
    index, _periods = person_index(lake_of(release(tmp_path)))
    k1 = {r["birth_year"] for r in index if r["person_id"] == "K1"}
    assert k1 == {1978}
    assert {r["birth_year_basis"] for r in index if r["person_id"] == "K1"} == {"ages"}
    assert not any(r["birth_year_conflict"] for r in index)
    assert [r["birth_year"] for r in index if r["member_id"] == "M2"] == [1989]  # one candidate: 2019 - 30


def test_ages_that_cannot_be_reconciled_are_a_conflict(tmp_path):
    release(tmp_path)
    with (tmp_path / "ME" / "ME_201901.txt").open("a") as f:  # M2: 30 twice, 31 once, then 55: a typo or a mix-up
        for month, age in ((2, 30), (3, 31), (4, 55)):
            f.write("|".join(str(v) for v in me_row("P1", "M2", "", 2019, month, age, sex="M")) + "\n")
    index, _periods = person_index(lake_of(tmp_path))
    m2 = next(r for r in index if r["member_id"] == "M2")
    assert (m2["birth_year"], m2["birth_year_conflict"]) == (1988, True)  # candidates 1989 x3 / 1988 x1 -> smaller
    assert not next(r for r in index if r["member_id"] == "M1")["birth_year_conflict"]


def test_member_month_rows_in_equal_rows_used_plus_quarantined(tmp_path):
    release(tmp_path)
    with (tmp_path / "ME" / "ME_201901.txt").open("a") as f:
        f.write("|".join(str(v) for v in me_row("P1", "M2", "", 2019, 13, 30)) + "\n")  # no month 13
        f.write("|".join(str(v) for v in me_row("P1", "M2", "", 2019, 2, "x", medical="maybe")) + "\n")
    lake = lake_of(tmp_path)
    with DuckDBWorker().session() as s:
        register_raw(s, lake)
        s.set_variables({"extract_date": lake.extract_day()})
        s.model_table("eligibility", "intake/eligibility")
        reasons = s.rows(
            "SELECT quarantine_reason, rejected_value, count(*) AS n FROM eligibility GROUP BY ALL ORDER BY ALL"
        )
        rows_in = s.scalar("SELECT count(*) FROM raw_eligibility")
    assert rows_in == 10 == sum(r["n"] for r in reasons)
    assert {(r["quarantine_reason"], r["rejected_value"]): r["n"] for r in reasons} == {
        (None, None): 8, ("invalid_coverage_month", None): 1, (None, "invalid_age"): 1}  # fmt: skip


def test_a_missing_required_element_names_the_file_and_the_element(tmp_path):
    release(tmp_path)
    mc = tmp_path / "MC" / "mc2019.csv"
    rows = list(csv.reader(mc.open()))
    keep = [i for i, name in enumerate(rows[0]) if name != "mc004"]
    with mc.open("w", newline="") as f:
        csv.writer(f).writerows([[r[i] for i in keep] for r in rows])
    with pytest.raises(Failure, match=r"APCD medical claims \(MC\) file .*mc2019\.csv has no element MC004 or MC907 "
                                      r"\(claim_id: .*PGX_APCD_ELEMENTS"):  # fmt: skip
        raw(lake_of(tmp_path))
    ok, lines = validate_inputs(lake_of(tmp_path))
    assert not ok and "     claim_id <- MISSING" in lines


def test_a_state_element_map_maps_what_the_state_numbers_differently(tmp_path):
    release(tmp_path)
    shutil.move(tmp_path / "MC" / "mc2019.csv", tmp_path / "MC" / "mc2019.bak")
    text = (tmp_path / "MC" / "mc2019.bak").read_text().replace("mc004", "mc999")
    (tmp_path / "MC" / "mc2019.csv").write_text(text)
    (tmp_path / "MC" / "mc2019.bak").unlink()
    elements = (Path(__file__).parents[1] / "sql/formats/apcd/elements.csv").read_text()
    mapped = tmp_path / "elements.csv"
    mapped.write_text(elements.replace("MC,claim_id,MC004 MC907", "MC,claim_id,MC999"))
    assert raw(lake_of(tmp_path, apcd_elements=str(mapped)), "SELECT claim_id FROM raw_medical ORDER BY 1") == [
        {"claim_id": "C1"}, {"claim_id": "C2"}]  # fmt: skip


def test_headerless_files_take_their_columns_from_the_maine_layout(tmp_path):
    """A Maine (MHDO) medical claims file without a header: its fields in the order of the real layout."""
    layout = tmp_path / "layout"
    shutil.copytree(MAINE, layout, ignore=shutil.ignore_patterns("*.pdf"))
    columns = [r["column"] for r in csv.DictReader((layout / "mc_columns.csv").open())]
    values = {"MC911_MHDO_MEMBERID": "M1", "MC907_MHDO_CLAIM": "C77", "MC005_LINE": "1", "MC059_FDATE": "20190305",
              "MC040_ECODE": "E8501", "MC910_MHDO_MEMSSN": "K1", "MC901_AGE": "40"}  # fmt: skip
    release(tmp_path / "raw")
    (tmp_path / "raw" / "MC" / "mc2019.csv").unlink()
    write(tmp_path / "raw" / "MC" / "MC_201903.txt", None, [[values.get(c, "") for c in columns]])
    lake = lake_of(tmp_path / "raw", apcd_layout=str(layout))
    got = raw(lake, "SELECT payer_id, member_id, claim_id, service_date, diagnosis_code_1 FROM raw_medical")
    assert got == [{"payer_id": "apcd", "member_id": "M1", "claim_id": "C77", "service_date": "20190305",
                    "diagnosis_code_1": "E8501"}]  # fmt: skip
    # without the layout: a clear error; a layout of another file: the field counts differ
    with pytest.raises(Failure, match=r"MC_201903\.txt has no header .* set PGX_APCD_LAYOUT"):
        raw(lake_of(tmp_path / "raw"))
    (layout / "mc_columns.csv").write_text((layout / "pc_columns.csv").read_text())
    with pytest.raises(Failure, match=r"MC_201903\.txt has 216 fields on its first line, its layout .* 46"):
        raw(lake)


def test_the_maine_layout_names_are_read_by_the_shipped_element_map(tmp_path):
    """Headers as Maine writes them (MC059_FDATE, ME910_MHDO_MEMBERID...): every required role is found."""
    for table in ("mc", "pc", "me", "pe"):
        columns = [r["column"] for r in csv.DictReader((MAINE / f"{table}_columns.csv").open())]
        write(tmp_path / table.upper() / f"{table.upper()}_2019.txt", columns, [])
    ok, lines = validate_inputs(lake_of(tmp_path))
    assert ok, "\n".join(lines)
    for role in ("member_id <- ME910", "claim_id <- MC907", "member_id <- MC911", "person_key <- MC910",
                 "claim_id <- PC906", "ndc <- PC026", "fill_date <- PC032", "medical_coverage <- ME018"):  # fmt: skip
        assert f"     {role}" in lines
    assert "     external_cause: 25 of 25 element(s)" in lines and "     other_diagnosis: 24 of 24 element(s)" in lines


def test_parquet_and_gzip_files_read_like_text(tmp_path):
    release(tmp_path / "text")
    counts = raw(lake_of(tmp_path / "text"))
    con = duckdb.connect()
    (tmp_path / "mixed" / "ME").mkdir(parents=True)
    con.execute(f"COPY (SELECT * FROM read_csv('{tmp_path}/text/ME/ME_201901.txt', delim='|', all_varchar=true)) "
                f"TO '{tmp_path}/mixed/ME/ME_201901.parquet' (FORMAT parquet)")  # fmt: skip
    shutil.copytree(tmp_path / "text" / "PC", tmp_path / "mixed" / "PC")
    (tmp_path / "mixed" / "MC").mkdir()
    with gzip.open(tmp_path / "mixed" / "MC" / "mc2019.csv.gz", "wt") as f:
        f.write((tmp_path / "text" / "MC" / "mc2019.csv").read_text())
    assert raw(lake_of(tmp_path / "mixed")) == counts


def test_one_table_in_many_files_of_different_header_styles(tmp_path):
    release(tmp_path)
    # a second month of eligibility with bare codes, and a layout file beside the data that is not read
    write(
        tmp_path / "ME" / "ME_201902.txt", [h.split("_")[0] for h in ME_HEADER], [me_row("P1", "M9", "", 2019, 2, 50)]
    )
    shutil.copy(MAINE / "me_columns.csv", tmp_path / "ME" / "me_columns.csv")
    assert raw(lake_of(tmp_path))["raw_eligibility"] == 9
    ok, lines = validate_inputs(lake_of(tmp_path))
    assert ok and "  APCD member eligibility (ME): 2 file(s)" in lines


def test_no_files_of_a_table_and_an_undetectable_delimiter_are_clear_errors(tmp_path):
    release(tmp_path)
    shutil.rmtree(tmp_path / "PC")
    with pytest.raises(Failure, match=r"no APCD pharmacy claims \(PC\) files under PGX_RAW_ROOT=.*tried"):
        raw(lake_of(tmp_path))
    write(tmp_path / "PC" / "PC_2019.txt", ["PC001 PC107"], [])
    with pytest.raises(Failure, match=r"PC_2019\.txt: its first line has no pipe, comma or tab.*PGX_RAW_DELIMITER"):
        raw(lake_of(tmp_path))


@pytest.mark.parametrize("staged", [False, True], ids=["read", "staged as Parquet"])
def test_a_damaged_line_names_its_file_and_line(tmp_path, staged):
    from pgx_dagster.raw_inputs import reading_raw

    release(tmp_path)
    with (tmp_path / "ME" / "ME_201901.txt").open("a") as f:
        f.write("P1|M3|K3|2019|1|F\n")  # cut short: 6 of 11 fields
    # found when the files are registered (ME is read up to its first drug-coverage value) or first queried
    match = r"ME_201901\.txt cannot be read as pipe-delimited text, header: .*Line: 10"
    with DuckDBWorker().session() as s, pytest.raises(Failure, match=match):
        used = register_raw(s, lake_of(tmp_path), stage_in=str(tmp_path) if staged else None)
        with reading_raw(s, used):
            s.scalar("SELECT count(*) FROM raw_eligibility")


def test_a_key_on_several_member_ids_of_one_payer_is_not_used(tmp_path):
    """A placeholder key (zeros, a subscriber's SSN on the dependants' records) would merge different people."""
    release(tmp_path)
    with (tmp_path / "ME" / "ME_201901.txt").open("a") as f:  # M5 and M6 of payer P1 carry M1's key K1
        for member in ("M5", "M6"):
            f.write("|".join(str(v) for v in me_row("P1", member, "K1", 2019, 1, 12)) + "\n")
    index, _periods = person_index(lake_of(tmp_path))
    persons = {r["member_id"]: r["person_id"] for r in index}
    # K1 is not used at P1 (M1, M5, M6: each a person of its own); at P2 it still links X9
    assert persons == {"M1": "member:P1:M1", "M5": "member:P1:M5", "M6": "member:P1:M6", "X9": "K1",
                       "M2": "member:P1:M2"}  # fmt: skip
    assert basis_of(lake_of(tmp_path)) == {"cross_payer_key": 1, "member_id": 4,
                                           "members_whose_key_is_shared_within_payer": 3}  # fmt: skip
    # and without the placeholder: K1 forms one person of two member ids, M2 its own
    assert basis_of(lake_of(release(tmp_path / "clean"))) == {"cross_payer_key": 1, "member_id": 1}


def test_a_quarantined_member_month_gives_no_age(tmp_path):
    release(tmp_path)
    with (tmp_path / "ME" / "ME_201901.txt").open("a") as f:  # three month-13 rows with another age: quarantined
        for _ in range(3):
            f.write("|".join(str(v) for v in me_row("P1", "M2", "", 2019, 13, 35)) + "\n")
    index, _periods = person_index(lake_of(tmp_path))
    assert [(r["birth_year"], r["birth_year_conflict"]) for r in index if r["member_id"] == "M2"] == [(1989, False)]


def test_staging_the_release_as_parquet_changes_nothing(tmp_path):
    """person_index stages the text as Parquet once (it reads the member-months seven times): the same rows."""
    lake = lake_of(release(tmp_path / "raw"))
    (tmp_path / "stage").mkdir()
    assert person_index(lake, stage_in=str(tmp_path / "stage")) == person_index(lake)
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == [
        "apcd_mc.parquet", "apcd_me.parquet", "apcd_pc.parquet"]  # fmt: skip

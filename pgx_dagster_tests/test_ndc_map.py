"""`pgx build-ndc-map` on a hand-made excerpt of the FDA NDC Directory in exactly its format
(pgx_dagster_tests/data/fda_ndc: tab-separated, Latin-1, CRLF, the FDA's headers), and the MME the
pipeline computes with the file it builds."""

import csv
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from pgx_dagster.codesets import register_codesets
from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.ops.ndc_map import build, ndc11
from pgx_dagster_tests.helpers import table

FDA = Path(__file__).parent / "data" / "fda_ndc"


def rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_package_codes_become_11_digit_ndcs():
    assert [ndc11(c) for c in ("0406-0123-01", "10544-591-60", "63629-4158-1", "12345-6789-01")] == [
        "00406012301", "10544059160", "63629415801", "12345678901"]  # fmt: skip
    assert ndc11("0406012301") is None and ndc11("04-06-01") is None


def test_the_ingredient_map_and_the_opioid_file(tmp_path):
    summary = build(FDA / "product.txt", FDA / "package.txt", tmp_path, "test")
    assert summary["products"] == 11 and summary["packages"] == 12
    ingredients = {(r["ndc"], r["ingredient"]) for r in rows(tmp_path / "ndc_ingredient.csv")}
    assert ingredients == {
        ("00406012301", "hydrocodone"),  # acetaminophen, the other substance, has no CPIC guidance here
        ("00406012305", "hydrocodone"),
        ("10544059160", "oxycodone"),
        ("50458051360", "codeine"),
        ("00054049050", "oxycodone"),
        ("00591321254", "fentanyl"),
        ("00641612525", "morphine"),
        ("65162062710", "tramadol"),
        ("63629415801", "clopidogrel"),
        ("00093711356", "paroxetine"),
    }  # no lisinopril; no buprenorphine (no CDC factor, no CPIC guidance)
    opioids = {r["ndc"]: (r["ingredient"], float(r["strength_per_unit"]), r["strength_unit"],
                          float(r["mme_conversion_factor"])) for r in rows(tmp_path / "opioid_ndc.csv")}  # fmt: skip
    assert opioids == {
        "00406012301": ("hydrocodone", 5.0, "mg", 1.0),
        "00406012305": ("hydrocodone", 5.0, "mg", 1.0),
        "10544059160": ("oxycodone", 10.0, "mg", 1.5),
        "50458051360": ("codeine", 30.0, "mg", 0.15),
        "00054049050": ("oxycodone", 1.0, "mg", 1.5),  # 5 mg/5 mL: per mL
        "00591321254": ("fentanyl", 25.0, "mcg/hr", 7.2),  # a patch: the CDC file's per-patch factor
        "65162062710": ("tramadol", 50.0, "mg", 0.1),
    }
    assert summary["left_out_of_the_opioid_file"] == {
        "morphine: intravenous mg/mL": 1,
        "buprenorphine: opioid agonist (PHARM_CLASSES) without a CDC conversion factor": 1,
    }


def test_the_pipeline_computes_mme_with_the_built_file(tmp_path):
    build(FDA / "product.txt", FDA / "package.txt", tmp_path, "test")

    def fill(claim, ndc, qty, days):
        return {"payer_id": "A", "member_id": "1", "person_id": "P", "claim_id": claim, "claim_line": 1,
                "fill_date": dt.date(2019, 5, 1), "event_year": 2019, "age_band": "65-74", "sex": "F",
                "ndc": ndc, "quantity": qty, "days_supply": days}  # fmt: skip

    with DuckDBWorker().session() as s:
        text = ("revenue_code", "place_of_service", "procedure_code", "diagnosis_code_1", "diagnosis_code_2",
                "diagnosis_code_3")  # fmt: skip
        claim = {"payer_id": "A", "claim_id": "M", "age_band": "65-74", "event_year": 2019, "person_id": "P",
                 "member_id": "1", "sex": "F", "service_date": dt.date(2019, 1, 1), **dict.fromkeys(text),
                 "other_diagnosis_codes": None, "diagnosis_code_system": "ICD10CM"}  # fmt: skip
        table(
            s,
            "imputed_medical",
            [claim],
            schema=dict.fromkeys(text, "VARCHAR") | {"other_diagnosis_codes": "VARCHAR[]"},
        )
        table(
            s,
            "imputed_pharmacy",
            [
                fill("R1", "00406012301", 60.0, 30),
                fill("R2", "00054049050", 300.0, 30),
                fill("R3", "00591321254", 10.0, 30),
            ],
            schema={"days_supply": "INTEGER", "quantity": "DOUBLE"},
        )
        register_codesets(s, str(tmp_path / "opioid_ndc.csv"))
        got = dict(
            s.execute(f"SELECT claim_id, mme_per_day FROM ({_events()}) WHERE event_type = 'opioid_fill'").fetchall()
        )
    # hydrocodone 5 mg x 60 / 30 x 1; oxycodone 1 mg/mL x 300 mL / 30 x 1.5; fentanyl 25 mcg/hr x 10 / 30 x 7.2
    assert got == pytest.approx({"R1": 10.0, "R2": 15.0, "R3": 60.0})


def _events() -> str:
    from pgx_dagster.duck import sql_text

    return sql_text("events/events")


def test_the_command_line(tmp_path):
    done = subprocess.run(
        [str(Path(sys.executable).parent / "pgx"), "build-ndc-map", "--product", str(FDA / "product.txt"),
         "--package", str(FDA / "package.txt"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "opioid_ndcs                   7" in done.stdout and (tmp_path / "opioid_ndc.csv").exists()
    wrong = subprocess.run(
        [str(Path(sys.executable).parent / "pgx"), "build-ndc-map", "--product", str(FDA / "package.txt"),
         "--package", str(FDA / "package.txt"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # package.txt given as the product file: the product columns it lacks, named, and nothing else
    missing = ("PROPRIETARYNAME, NONPROPRIETARYNAME, DOSAGEFORMNAME, ROUTENAME, SUBSTANCENAME, "
               "ACTIVE_NUMERATOR_STRENGTH, ACTIVE_INGRED_UNIT, PHARM_CLASSES")  # fmt: skip
    assert wrong.returncode == 2
    assert f"{FDA / 'package.txt'}: not an FDA NDC Directory file, no column(s) {missing}\n" in wrong.stderr
    assert "Traceback" not in wrong.stderr

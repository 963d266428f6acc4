"""The opioid reference is CDC's list (sql/codesets/opioid_ndc.csv, built by `pgx build-opioid-ndc` from the
public CSV in ../shared/data), and the synthetic generator draws its opioid fills from it."""

import csv
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pgx_dagster.codesets import DEFAULT_NDC_INGREDIENT, DEFAULT_OPIOID_NDC
from pgx_dagster.ops import opioid_reference
from pgx_dagster_tests.helpers import sample_data


def cdc_sheet() -> Path:
    return sample_data() / "cdc_opioid_mme_2017" / "opioids.csv"


def test_the_shipped_reference_is_cdcs_list_as_the_command_builds_it(tmp_path):
    built = tmp_path / "opioid_ndc.csv"
    summary = opioid_reference.build(cdc_sheet(), built)
    assert built.read_bytes() == DEFAULT_OPIOID_NDC.read_bytes(), "run: pgx build-opioid-ndc --cdc <opioids.csv>"
    assert summary["opioid_ndcs"] == 13_661
    assert summary["by_mme_rule"] == {"no_factor": 156, "patch": 226, "standard": 13_279}


def test_every_row_carries_strength_unit_factor_acting_version_and_source():
    with DEFAULT_OPIOID_NDC.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(len(r["ndc"]) == 11 and r["ndc"].isdigit() for r in rows)
    assert all(r["acting"] in ("short", "long") and r["version"] == "2017.09" and r["source"] for r in rows)
    bupe = [r for r in rows if r["ingredient"] == "buprenorphine"]
    assert len(bupe) == 156 and not any(r["mme_conversion_factor"] for r in bupe)  # CDC: no factor
    patches = [r for r in rows if r["strength_unit"] == "MCG/HR" and r["ingredient"] == "fentanyl"]
    assert patches and {r["mme_conversion_factor"] for r in patches} == {"7.2"}
    assert {"codeine", "tramadol", "hydrocodone", "oxycodone"} <= {r["ingredient"] for r in rows}  # CYP2D6 opioids


# The placeholder opioid NDCs the project shipped before CDC's list (labelers 99000-99007), retired.
PLACEHOLDER = re.compile(r"^9900[0-7]000[0-3]01$")


def test_no_placeholder_opioid_ndc_is_left():
    for path in (DEFAULT_OPIOID_NDC, DEFAULT_NDC_INGREDIENT):
        with path.open(newline="") as f:
            assert not [r["ndc"] for r in csv.DictReader(f) if PLACEHOLDER.match(r["ndc"])], path


def test_a_sheet_that_is_not_cdcs_is_refused_with_the_file_and_the_column(tmp_path):
    bad = tmp_path / "opioids.csv"
    bad.write_text("NDC,Product_Name\n00000000001,X\n")
    with pytest.raises(ValueError, match=r"opioids.csv: not CDC's opioid MME sheet, no column\(s\) Master_Form"):
        opioid_reference.build(bad, tmp_path / "out.csv")
    header = cdc_sheet().read_text().splitlines()[0]
    bad.write_text(header + "\n0009A,X,,,Tablet,Opioid,Codeine,SA,2,30,MG,0.15\n")
    with pytest.raises(ValueError, match="line 2: NDC '0009A'"):
        opioid_reference.build(bad, tmp_path / "out.csv")


def test_the_command_writes_the_reference_and_says_what_it_holds(tmp_path):
    out = tmp_path / "ref.csv"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "pgx"), "build-opioid-ndc", "--cdc", str(cdc_sheet()), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "opioid_ndcs   13661" in done.stdout and out.exists()
    missing = subprocess.run(
        [str(Path(sys.executable).parent / "pgx"), "build-opioid-ndc", "--cdc", str(tmp_path / "nope.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "nope.csv" in missing.stderr and "Traceback" not in missing.stderr


def test_the_generator_draws_its_opioid_fills_from_the_reference(tmp_path):
    from pgx_dagster.ops.synth import generate

    manifest = generate(1500, [2019], 7, tmp_path)
    con = duckdb.connect()
    reference = {
        r[0] for r in con.execute(f"SELECT ndc FROM read_csv('{DEFAULT_OPIOID_NDC}', all_varchar=true)").fetchall()
    }
    fills = con.execute(
        f"SELECT regexp_replace(ndc, '[^0-9]', '', 'g') FROM read_parquet('{tmp_path}/pharmacy_claims/**/*.parquet')"
    ).fetchall()
    opioid = [n for (n,) in fills if n and n.zfill(11) in reference]
    assert len(opioid) >= sum(p.get("opioid_fill", 0) for p in manifest["partitions"].values()) > 0
    assert not any(n and PLACEHOLDER.match(n.zfill(11)) for (n,) in fills)
    assert len({n.zfill(11) for n in opioid}) > 100  # drawn across the list, not a handful

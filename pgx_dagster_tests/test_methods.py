"""The report's Methods, provenance and synthetic-data banner (pgx_dagster/methods.py): generated from the
cohort's TOML, the code sets and the lake, so they change when any of these does."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pgx_dagster import methods
from pgx_dagster.cohort_definitions import load
from pgx_dagster.datasets import ELIGIBILITY_QUARANTINE, INTAKE_QUARANTINE, PERSON_INDEX, SILVER, STAGED
from pgx_dagster.lake import LakeResource
from pgx_dagster.ops.synth import generate
from pgx_dagster.reporting import write_checkpoint
from pgx_dagster.settings import COHORT_DIR, REPO_ROOT, event_years

SHIPPED = COHORT_DIR / "opioid_ed.toml"
HEADINGS = ["Design", "Matching", "Look-back and washout", "Exposure window", "Exposure definitions",
            "Statistical model", "Code sets"]  # fmt: skip
PROVENANCE_KEYS = {
    "cohort definition", "cohort definition sha256", "design", "seed", "python", "dagster", "duckdb",
    "statsmodels", "numpy", "pandas", "scipy", "pgx-dagster", "git commit", "input files", "input fingerprint",
    "rows read: medical claims", "rows read: pharmacy claims", "rows read: eligibility", "member ids linked",
    "claims date range", "extract date", "input format", "code sets", "generated",
}  # fmt: skip


def risk_set_definition(folder: Path) -> Path:
    """The shipped cohort as a risk-set study: 1:3, a 180-day look-back, a 90-day window, a large seed."""
    text = SHIPPED.read_text()
    for old, new in (('design = "exclusive"', 'design = "risk_set"'), ("lookback_days = 365", "lookback_days = 180"),
                     ("controls_per_target = 5", "controls_per_target = 3"), ("seed = 20240101", "seed = 987654321"),
                     ("exposure_window_days = 365", "exposure_window_days = 90"),
                     ('name = "opioid_ed"', 'name = "opioid_ed_risk"')):  # fmt: skip
        assert old in text, old
        text = text.replace(old, new)
    path = folder / "opioid_ed_risk.toml"
    path.write_text(text)
    return path


def test_methods_are_generated_from_the_cohort_definition(tmp_path):
    lake = LakeResource(raw_root=str(tmp_path / "raw"), lake_root=str(tmp_path / "lake"), extract_date="2021-06-30")
    exclusive = dict(methods.methods_sections(load(SHIPPED), lake))
    risk = dict(methods.methods_sections(load(risk_set_definition(tmp_path)), lake))
    assert list(exclusive) == HEADINGS and list(risk) == HEADINGS
    assert all(text.strip() for text in [*exclusive.values(), *risk.values()])

    assert "incidence-density (risk-set) sampling" in risk["Design"]
    assert "incidence-density" not in exclusive["Design"]
    assert "cumulative (exclusive) sampling" in exclusive["Design"] and "home year" in exclusive["Design"]
    assert "rare-outcome assumption" in risk["Design"] and "only when the outcome is rare" in exclusive["Design"]
    assert "1:3" in risk["Design"] and "1:3" in risk["Matching"] and "1:5" not in risk["Matching"]
    assert "1:5" in exclusive["Matching"]
    # the seed as an identifier: no thousands separators
    assert "seed 987654321" in risk["Matching"] and "987,654,321" not in " ".join(risk.values())
    assert "seed 20240101" in exclusive["Matching"]
    assert "XOR" in risk["Matching"] and "XOR" not in exclusive["Matching"]
    assert "180 days of continuous enrolment" in risk["Look-back and washout"]
    assert "365 days of continuous enrolment" in exclusive["Look-back and washout"]
    assert "90 days before the index date" in risk["Exposure window"]
    assert "365 days before the index date" in exclusive["Exposure window"]
    # the sensitivity analyses name the design not used
    assert "the risk_set design" in exclusive["Statistical model"]
    assert "the exclusive design" in risk["Statistical model"]
    for text in (exclusive, risk):
        assert "opioid poisoning (opioid_poisoning)" in text["Look-back and washout"]
        assert "2016-2020" in text["Design"] or str(event_years()[0]) in text["Design"]


def test_a_window_longer_than_the_look_back_and_no_look_back_say_so(tmp_path):
    text = SHIPPED.read_text().replace("exposure_window_days = 365", "exposure_window_days = 500")
    (tmp_path / "long.toml").write_text(text.replace("lookback_days = 365", "lookback_days = 0"))
    sections = dict(methods.methods_sections(load(tmp_path / "long.toml"), LakeResource(lake_root=str(tmp_path))))
    assert "500 days longer than the 0-day look-back" in sections["Exposure window"]
    assert "No look-back is required" in sections["Look-back and washout"]


def test_exposure_definitions_and_model_come_from_the_code_sets_and_the_code(tmp_path):
    sections = dict(methods.methods_sections(load(SHIPPED), LakeResource(lake_root=str(tmp_path))))
    exposures, model = sections["Exposure definitions"], sections["Statistical model"]
    with (REPO_ROOT / "sql" / "codesets" / "pgx_drugs.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        assert row["ingredient"] in exposures
        if row["cpic_level"]:
            assert f"{row['gene']} CPIC level {row['cpic_level']}" in exposures
    assert "warfarin (CYP2C9 CPIC level A; VKORC1 CPIC level A)" in exposures
    assert "a fill of codeine, tramadol, hydrocodone or oxycodone" in exposures
    assert "a fill of paroxetine, fluoxetine, bupropion or quinidine" in exposures
    for group in ("cyp2d6_opioid_with_inhibitor", "cyp2d6_opioid_functional_poor", "complete case",
                  "all-persons definition", "drug-coverage gap"):  # fmt: skip
        assert group in exposures
    for fact in ("ConditionalLogit", "Newton-Raphson", "Wald 95% confidence interval", "Mantel-Haenszel",
                 "discordant", "Benjamini-Hochberg", "80% power", "alpha 0.05", "Dupont", "taken as 0",
                 "sex in the set's year was imputed", "at least 2 fills"):  # fmt: skip
        assert fact in model, fact


def test_code_set_versions_and_sources_appear_one_line_each(tmp_path):
    lake = LakeResource(lake_root=str(tmp_path))
    lines = dict(methods.methods_sections(load(SHIPPED), lake))["Code sets"].splitlines()
    assert [line.split(" version ")[0] for line in lines] == [
        "ed_visit", "opioid_poisoning", "opioid_use_disorder", "pgx_drugs", "mme_conversion", "opioid_ndc",
        "ndc_ingredient",
    ]  # fmt: skip
    assert lines[0].startswith("ed_visit version 2026.11: emergency department visit. Source: revenue codes")
    assert lines[5].startswith("opioid_ndc version 2017.09: ") and "September 2017" in lines[5]
    assert lines[4].startswith("mme_conversion version 2018.09: ")
    # a user's opioid list: its version, its path and its own source column
    mine = tmp_path / "state_opioids.csv"
    shutil.copy(REPO_ROOT / "sql" / "codesets" / "opioid_ndc.csv", mine)
    text = mine.read_text().replace(",2017.09,", ",2099.01,").replace("CDC opioid analgesics", "State NDC list")
    mine.write_text(text)
    lake = LakeResource(lake_root=str(tmp_path), opioid_ndc_file=str(mine))
    line = dict(methods.methods_sections(load(SHIPPED), lake))["Code sets"].splitlines()[5]
    assert line.startswith("opioid_ndc version 2099.01: ")
    assert f"PGX_OPIOID_NDC_FILE={mine}" in line and "State NDC list" in line and "September 2017" not in line
    assert "opioid_ndc 2099.01" in methods.provenance(load(SHIPPED), lake)["code sets"]


def write_parquet(path: str, query: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect().execute(f"COPY ({query}) TO '{path}' (FORMAT parquet)")


def small_lake(root: Path) -> LakeResource:
    """A lake as intake and silver leave it, by hand: staged and quarantined claims, person_index, silver
    partitions (one pharmacy file without Parquet statistics)."""
    lake = LakeResource(lake_root=str(root))
    rows = "SELECT range AS i FROM range({})"
    write_parquet(STAGED["medical"].shard(0).path(lake, "18-34", 2017, "data_0.parquet"), rows.format(7))
    write_parquet(STAGED["medical"].shard(0).path(lake, "65-74", 2019, "data_0.parquet"), rows.format(3))
    write_parquet(INTAKE_QUARANTINE["medical"].shard(0).path(lake), rows.format(2))
    write_parquet(STAGED["pharmacy"].shard(0).path(lake, "18-34", 2017, "data_0.parquet"), rows.format(4))
    write_parquet(PERSON_INDEX.path(lake), rows.format(5))
    dates = "SELECT DATE '{}' + CAST(range AS INTEGER) AS {} FROM range({})"
    write_parquet(SILVER["medical"].path(lake, "18-34", 2017), dates.format("2017-02-03", "service_date", 10))
    write_parquet(SILVER["medical"].path(lake, "65-74", 2019), dates.format("2019-11-21", "service_date", 10))
    write_parquet(SILVER["pharmacy"].path(lake, "18-34", 2017), dates.format("2016-05-01", "fill_date", 3))
    # written without statistics: the date range reads the column itself
    no_stats = SILVER["pharmacy"].path(lake, "65-74", 2019)
    Path(no_stats).parent.mkdir(parents=True)
    table = pa.table({"fill_date": pa.array([date(2019, 12, 31), date(2016, 1, 15)], pa.date32())})
    pq.write_table(table, no_stats, write_statistics=False)
    return lake


def test_provenance_every_value_text_rows_dates_and_fingerprint(tmp_path):
    raw = tmp_path / "raw"
    manifest = generate(300, event_years(), 11, raw)
    built = small_lake(tmp_path / "lake")
    lake = LakeResource(raw_root=str(raw), lake_root=built.lake_root, extract_date="2021-06-30")
    d = load(risk_set_definition(tmp_path))
    p = methods.provenance(d, lake)
    assert set(p) == PROVENANCE_KEYS
    assert all(isinstance(v, str) and v for v in p.values())
    assert p["seed"] == "987654321" and p["extract date"] == "2021-06-30" and p["input format"] == "pgx"
    assert p["cohort definition"] == str(tmp_path / "opioid_ed_risk.toml")
    assert p["cohort definition sha256"] == hashlib.sha256((tmp_path / "opioid_ed_risk.toml").read_bytes()).hexdigest()
    assert p["design"] == "risk_set, 1:3, look-back 180 days, exposure window 90 days"
    assert p["duckdb"] == duckdb.__version__ and p["pandas"] == pd.__version__
    # the four raw tables and the genotypes: one file each, as generated
    files = sorted(f for f in raw.rglob("*.parquet"))
    assert len(files) == 5
    assert p["input files"] == f"5 files, {sum(f.stat().st_size for f in files):,} bytes"
    listing = "".join(sorted(f"{f.relative_to(raw)}\t{f.stat().st_size}\n" for f in files))
    assert p["input fingerprint"] == f"sha256 {hashlib.sha256(listing.encode()).hexdigest()}"
    # rows intake read = placed + quarantined, from the footers; eligibility only when recorded
    assert p["rows read: medical claims"] == "12 (10 placed, 2 quarantined by intake)"
    assert p["rows read: pharmacy claims"] == "4 (4 placed, 0 quarantined by intake)"
    assert p["rows read: eligibility"] == "not recorded" and p["member ids linked"] == "5"
    assert p["claims date range"] == (
        "2016-01-15 to 2019-12-31 (medical service dates 2017-02-03 to 2019-11-30; "
        "pharmacy fill dates 2016-01-15 to 2019-12-31)"
    )
    assert manifest["raw_rows"]["member_eligibility"] > 0

    # the same extract elsewhere fingerprints the same; a file grown by a byte does not
    copy = tmp_path / "copy"
    shutil.copytree(raw, copy)
    assert methods.fingerprint(LakeResource(raw_root=str(copy)))[2] == p["input fingerprint"].split()[1]
    with open(copy / "medical_claims" / "medical_claims_000.parquet", "ab") as f:
        f.write(b"\0")
    n, size, digest = methods.fingerprint(LakeResource(raw_root=str(copy)))
    assert n == 5 and digest != p["input fingerprint"].split()[1]
    assert p["input files"] == f"5 files, {size - 1:,} bytes"

    # eligibility rows as intake's eligibility quarantine records them
    folder = Path(ELIGIBILITY_QUARANTINE.dir(lake))
    folder.mkdir(parents=True)
    write_checkpoint(str(folder), "intake", "INTAKE_ELIGIBILITY", {"rows_in": 123456})
    assert methods.provenance(d, lake)["rows read: eligibility"] == "123,456"


def test_provenance_of_a_lake_not_yet_built(tmp_path):
    lake = LakeResource(raw_root=str(tmp_path / "raw"), lake_root=str(tmp_path / "lake"))
    p = methods.provenance(load(SHIPPED), lake)
    assert set(p) == PROVENANCE_KEYS
    assert p["input files"] == "0 files, 0 bytes" and p["cohort definition"] == "cohorts/opioid_ed.toml"
    assert p["claims date range"] == "not recorded (silver has not run)"
    assert p["rows read: medical claims"] == "not recorded (intake has not run)"


def test_the_git_commit_is_read_from_dot_git_without_git(tmp_path):
    if shutil.which("git") and (REPO_ROOT / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert methods.git_commit() == head.stdout.strip()
        assert methods.code_version().endswith(f"commit {head.stdout.strip()[:12]}")
    a, b = "a" * 40, "b" * 40
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    assert methods.git_commit(repo) == ""  # no HEAD
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "packed-refs").write_text(f"# pack-refs with: peeled\n{b} refs/heads/other\n{a} refs/heads/main\n")
    assert methods.git_commit(repo) == a  # from packed-refs
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "refs" / "heads" / "main").write_text(f"{b}\n")
    assert methods.git_commit(repo) == b  # the loose ref wins
    # a worktree: .git is a file naming its git dir, whose commondir holds the branches
    tree = tmp_path / "tree"
    (repo / ".git" / "worktrees" / "tree").mkdir(parents=True)
    (repo / ".git" / "worktrees" / "tree" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "worktrees" / "tree" / "commondir").write_text("../..\n")
    tree.mkdir()
    (tree / ".git").write_text(f"gitdir: {repo / '.git' / 'worktrees' / 'tree'}\n")
    assert methods.git_commit(tree) == b
    (repo / ".git" / "worktrees" / "tree" / "HEAD").write_text(f"{a}\n")  # detached
    assert methods.git_commit(tree) == a
    assert methods.git_commit(tmp_path / "nowhere") == ""


def test_synthetic_run_from_the_generators_manifest_and_none_otherwise(tmp_path):
    raw = tmp_path / "synth"
    manifest = generate(300, event_years(), 11, raw)
    expected = {
        "generator": "pgx-synth",
        "seed": "11",
        "persons": 300,
        "planted_odds_ratio": manifest["planted_effect"]["odds_ratio"],
        "planted_exposure": manifest["planted_effect"]["exposure"],
        "exposure": "cyp2d6_opioid_functional_poor",
    }
    assert manifest["planted_effect"]["odds_ratio"] > 1
    assert methods.synthetic_run(LakeResource(raw_root=str(raw))) == expected
    empty = tmp_path / "real"
    empty.mkdir()
    # several raw folders: the one holding the manifest
    assert methods.synthetic_run(LakeResource(raw_root=f"{empty}, {raw}/")) == expected
    assert methods.synthetic_run(LakeResource(raw_root=str(empty))) is None
    broken = tmp_path / "broken"
    broken.mkdir()
    for text in ('{"generator": "pgx-synth", "seed": 1', "[]", json.dumps({**manifest, "generator": "other"}),
                 json.dumps({**manifest, "planted_effect": {"odds_ratio": "3"}}),
                 json.dumps({**manifest, "seed": None}), "\udcff"):  # fmt: skip
        (broken / "manifest.json").write_bytes(text.encode("utf-8", "surrogateescape"))
        assert methods.synthetic_run(LakeResource(raw_root=str(broken))) is None, text
    (broken / "manifest.json").unlink()
    (broken / "manifest.json").mkdir()  # a folder of that name
    assert methods.synthetic_run(LakeResource(raw_root=str(broken))) is None


@pytest.mark.parametrize("odds_ratio", [0, -1.5, float("inf"), True])
def test_a_manifest_without_a_usable_odds_ratio_has_no_banner(tmp_path, odds_ratio):
    manifest = {"generator": "pgx-synth", "seed": 3, "persons": 10,
                "planted_effect": {"odds_ratio": odds_ratio, "exposure": "x"}}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert methods.synthetic_run(LakeResource(raw_root=str(tmp_path))) is None

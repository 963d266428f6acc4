"""Table 1 (sql/analysis/table1.sql, table1.parquet beside balance.parquet, exported as <cohort>_table1.csv):
against numbers worked out by hand on a hand-made risk-set cohort, and against an independent pandas
recomputation from features.parquet and exposure_flags.parquet of the boosted pipeline."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pgx_dagster import datasets
from pgx_dagster.duck import sql_text
from pgx_dagster.lake import LakeResource
from pgx_dagster_tests.helpers import evaluate_check, meta, rewrite_parquet
from pgx_dagster_tests.test_analysis import COHORT, analysis_rows, export_dir

GENES = ("cyp2d6", "cyp2c19", "cyp2c9", "slco1b1", "vkorc1")
NUMBERS = ("targets_n", "targets_denominator", "controls_n", "controls_denominator")
FLOATS = ("targets_pct", "targets_mean", "targets_sd", "controls_pct", "controls_mean", "controls_sd", "smd")
KEY = ("row_order", "section", "characteristic", "level", "statistic", "unit")


# ---- a hand-made cohort, worked out by hand ----------------------------------------------------------------
# S1: target T1, controls C1 and C2 (1:2); S2: target T2 and C1 again (risk-set sampling, a short 1:1 set);
# S3: target T3 without a control (left out). Weights: T 1, C1/C2 in S1 1/2, C1 in S2 1.
FEATURES = [
    # set, person, target, n_controls, sex, age band, year, birth, fills, MME/day, OUD, CYP2D6
    ("S1", "T1", True, 2, "F", "18-34", 2019, 1990, 2, 30.0, True, "Poor Metabolizer"),
    ("S1", "C1", False, 2, "F", "18-34", 2019, 1992, 1, 10.0, False, "Normal Metabolizer"),
    ("S1", "C2", False, 2, "F", "18-34", 2019, 1988, 0, 0.0, True, None),
    ("S2", "T2", True, 1, "F", "18-34", 2020, 1980, 0, 0.0, False, None),
    ("S2", "C1", False, 1, "F", "18-34", 2020, 1992, 3, 50.0, False, "Normal Metabolizer"),
    ("S3", "T3", True, 0, "F", "35-44", 2019, 1970, 5, 90.0, True, "Poor Metabolizer"),
]
# exposed per member of T1, C1@S1, C2@S1, T2, C1@S2, T3 (None: unknown)
FLAGS = {
    ("group", "cyp2d6_opioid"): (True, False, None, False, True, True),
    ("drug", "drug:codeine"): (False,) * 6,  # nobody on either side: pct 0, SMD 0
    ("drug", "drug:tramadol"): (False, True, True, False, True, False),  # no variance, the sides differ: NULL
    ("drug_phenotype", "drug:codeine x CYP2D6 Poor Metabolizer"): (True,) * 6,  # not a Table 1 row
}


def hand_session(design: str | None, features: list[tuple] = FEATURES) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE features (matched_set_id VARCHAR, person_id VARCHAR, is_target BOOLEAN, n_controls INTEGER, "
        "sex VARCHAR, age_band VARCHAR, event_year INTEGER, birth_year INTEGER, prior_opioid_fills BIGINT, "
        "max_mme_per_day DOUBLE, prior_oud BOOLEAN, cyp2d6_phenotype VARCHAR, cyp2c19_phenotype VARCHAR, "
        "cyp2c9_phenotype VARCHAR, slco1b1_phenotype VARCHAR, vkorc1_phenotype VARCHAR)"
    )
    con.executemany("INSERT INTO features VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL)",
                    [list(r) for r in features])  # fmt: skip
    con.execute(
        "CREATE TABLE exposure_flags (matched_set_id VARCHAR, person_id VARCHAR, is_target BOOLEAN, kind VARCHAR, "
        "exposure VARCHAR, gene VARCHAR, phenotype VARCHAR, exposed BOOLEAN)"
    )
    con.executemany(
        "INSERT INTO exposure_flags VALUES (?, ?, ?, ?, ?, NULL, NULL, ?)",
        [[f[0], f[1], f[2], kind, exposure, exposed[i]] for (kind, exposure), exposed in FLAGS.items()
         for i, f in enumerate(features)],
    )  # fmt: skip
    if design:
        con.execute(f"SET VARIABLE design = '{design}'")
    return con


def rows_of(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cur = con.execute(sql)
    return [dict(zip([d[0] for d in cur.description], r, strict=True)) for r in cur.fetchall()]


def by_line(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["characteristic"], r["level"]): r for r in rows}


def test_table1_of_a_hand_made_risk_set_cohort():
    con = hand_session("risk_set")
    rows = rows_of(con, sql_text("analysis/table1"))
    t = by_line(rows)
    assert [r["row_order"] for r in rows] == list(range(1, 21))
    assert [(r["section"], r["characteristic"], r["level"]) for r in rows[:6]] == [
        ("N", "persons", None), ("N", "control set memberships", None), ("matching keys", "sex", "F"),
        ("matching keys", "age band", "18-34"), ("matching keys", "event year", "2019"),
        ("matching keys", "event year", "2020"),
    ]  # fmt: skip
    # N: distinct persons (C1 serves twice), then the memberships the other rows count; T3 has no control
    n = t[("persons", None)]
    assert (n["statistic"], n["unit"], n["targets_n"], n["controls_n"], n["smd"]) == ("n", "persons", 2, 2, None)
    assert n["note"].endswith("left out, targets without a control: 1")
    m = t[("control set memberships", None)]
    assert (m["unit"], m["targets_n"], m["controls_n"]) == ("set memberships", 2, 3)
    assert t[("sex", "F")]["unit"] == "set memberships"

    def check(line, tn, td, tp, cn, cd, cp, smd):
        r = t[line]
        counts = (r["targets_n"], r["targets_denominator"], r["controls_n"], r["controls_denominator"])
        assert counts == (tn, td, cn, cd), line
        assert r["targets_pct"] == pytest.approx(tp, abs=1e-12) and r["controls_pct"] == pytest.approx(cp, abs=1e-12)
        assert (r["smd"] is None) if smd is None else r["smd"] == pytest.approx(smd, abs=1e-10), (line, r["smd"])

    # every member F and 18-34: no variance, the means agree -> 0; event year balanced by the set weights:
    # 2019 targets 1/2, controls weighted (1/2 + 1/2) / 2 = 1/2 although unweighted 2 of 3
    check(("sex", "F"), 2, 2, 100, 3, 3, 100, 0)
    check(("age band", "18-34"), 2, 2, 100, 3, 3, 100, 0)
    check(("event year", "2019"), 1, 2, 50, 2, 3, 200 / 3, 0)
    check(("event year", "2020"), 1, 2, 50, 1, 3, 100 / 3, 0)
    # prior OUD: targets mean 1/2, var 1/4; controls weighted (1/2)/2 = 1/4, var 1/4 - 1/16 = 3/16
    check(("prior OUD", None), 1, 2, 50, 1, 3, 100 / 3, 0.25 / math.sqrt((0.25 + 0.1875) / 2))
    # birth year: targets 1990, 1980 (mean 1985, SD sqrt(50), weighted var 25); controls 1992 (w 1/2), 1988 (1/2),
    # 1992 (1): weighted mean 1991, var (1/2 + 9/2 + 1) / 2 = 3; unweighted 5972/3, SD sqrt(16/3)
    b = t[("birth year", None)]
    assert (b["statistic"], b["unit"], b["targets_n"], b["targets_denominator"], b["controls_n"]) == (
        "mean (SD)", "years", 2, 2, 3)  # fmt: skip
    assert b["targets_pct"] is None and b["note"] is None
    assert b["targets_mean"] == pytest.approx(1985, abs=1e-9) and b["targets_sd"] == pytest.approx(math.sqrt(50))
    assert b["controls_mean"] == pytest.approx(5972 / 3) and b["controls_sd"] == pytest.approx(math.sqrt(16 / 3))
    assert b["smd"] == pytest.approx(-6 / math.sqrt(14), abs=1e-10)
    # fills: targets 2, 0; controls 1, 0, 3 -> weighted mean 1.75, E[x^2] 4.75
    f = t[("prior opioid fills", None)]
    assert (f["unit"], f["targets_mean"], f["controls_mean"]) == ("fills", 1.0, pytest.approx(4 / 3))
    assert f["targets_sd"] == pytest.approx(math.sqrt(2)) and f["controls_sd"] == pytest.approx(math.sqrt(7 / 3))
    assert f["smd"] == pytest.approx(-0.75 / math.sqrt((1 + (4.75 - 1.75**2)) / 2), abs=1e-10)
    mme = t[("highest MME/day", None)]
    assert (mme["unit"], mme["targets_mean"], mme["controls_mean"]) == ("MME/day", 15.0, pytest.approx(20.0))
    assert mme["controls_sd"] == pytest.approx(math.sqrt(700))
    assert mme["smd"] == pytest.approx(-12.5 / math.sqrt((225 + 1275 - 27.5**2) / 2), abs=1e-10)
    # cyp2d6_opioid: C2 unknown, left out (its set's C1 keeps weight 1/2): controls 0 (1/2) and 1 (1) ->
    # weighted mean 2/3, var 2/9; unweighted 1 of 2
    check(("cyp2d6_opioid", None), 1, 2, 50, 1, 2, 50, (0.5 - 2 / 3) / math.sqrt((0.25 + 2 / 9) / 2))
    assert t[("cyp2d6_opioid", None)]["note"].startswith("exposure unknown for 0 targets and 1 controls")
    check(("drug:codeine", None), 0, 2, 0, 0, 3, 0, 0)
    check(("drug:tramadol", None), 0, 2, 0, 3, 3, 100, None)  # the sides differ entirely, no variance
    assert t[("drug:codeine", None)]["note"] is None
    assert not any("drug_phenotype" in r["characteristic"] or " x " in r["characteristic"] for r in rows)
    assert [r["characteristic"] for r in rows if r["section"] == "exposures"] == [
        "cyp2d6_opioid", "drug:codeine", "drug:tramadol"]  # fmt: skip
    # genotypes: genotyped of all members, weighted controls (1/2 + 1) / 2 = 3/4; phenotypes among the genotyped:
    # the sides differ entirely with no variance: SMD undefined
    check(("CYP2D6 genotyped", None), 1, 2, 50, 2, 3, 200 / 3, (0.5 - 0.75) / math.sqrt((0.25 + 0.1875) / 2))
    check(("CYP2D6 phenotype", "Normal Metabolizer"), 0, 1, 0, 2, 2, 100, None)
    check(("CYP2D6 phenotype", "Poor Metabolizer"), 1, 1, 100, 0, 2, 0, None)
    assert t[("CYP2D6 phenotype", "Poor Metabolizer")]["note"] == "among the genotyped"
    for gene in ("CYP2C19", "CYP2C9", "SLCO1B1", "VKORC1"):  # nobody genotyped: 0 %, SMD 0, no phenotype row
        check((f"{gene} genotyped", None), 0, 2, 0, 0, 3, 0, 0)
        assert not any(r["characteristic"] == f"{gene} phenotype" for r in rows)
    # every SMD that balance.sql has is Table 1's
    balance = {r["covariate"]: r["smd"] for r in rows_of(con, sql_text("analysis/balance"))}
    assert balance_smds(rows) == balance


def test_an_exclusive_cohort_has_one_n_row_in_persons():
    """Without reuse (C1 of S2 now a person of its own) and design exclusive: no memberships row, units persons."""
    features = [r if (r[0], r[1]) != ("S2", "C1") else (r[0], "C3", *r[2:]) for r in FEATURES]
    rows = rows_of(hand_session("exclusive", features), sql_text("analysis/table1"))
    assert [r["characteristic"] for r in rows if r["section"] == "N"] == ["persons"]
    assert (rows[0]["targets_n"], rows[0]["controls_n"]) == (2, 3)
    assert {r["unit"] for r in rows if r["statistic"] == "n (%)"} == {"persons"}
    # no design given: a control in several sets still makes the rows memberships
    rows = rows_of(hand_session(None), sql_text("analysis/table1"))
    assert [r["characteristic"] for r in rows if r["section"] == "N"] == ["persons", "control set memberships"]


def balance_smds(rows: list[dict]) -> dict[str, float | None]:
    """Table 1's SMD of every covariate balance.parquet has, by balance's name for it."""
    names = {"sex": "sex {}", "age band": "age_band {}", "event year": "event_year {}", "birth year": "birth_year",
             "prior opioid fills": "prior_opioid_fills", "highest MME/day": "max_mme_per_day",
             "prior OUD": "prior_oud"}  # fmt: skip
    out = {}
    for r in rows:
        if r["section"] == "exposures":
            out[r["characteristic"]] = r["smd"]
        elif r["characteristic"] in names and (r["characteristic"] != "sex" or r["level"] == "F"):
            out[names[r["characteristic"]].format(r["level"])] = r["smd"]
    return out


# ---- the boosted pipeline, recomputed in pandas ------------------------------------------------------------
def weighted_smd(t: pd.DataFrame, c: pd.DataFrame) -> float | None:
    """balance.sql's SMD, written again: weighted moments over the rows with a value (column v, weight w)."""
    t, c = t[t.v.notna()], c[c.v.notna()]
    if t.empty or c.empty:
        return None
    mt, mc = (t.w * t.v).sum() / t.w.sum(), (c.w * c.v).sum() / c.w.sum()
    vt = max((t.w * t.v * t.v).sum() / t.w.sum() - mt**2, 0)
    vc = max((c.w * c.v * c.v).sum() / c.w.sum() - mc**2, 0)
    if abs(mt - mc) < 1e-12:
        return 0.0
    return round((mt - mc) / math.sqrt((vt + vc) / 2), 10) if vt + vc > 1e-12 else None


def expected_row(section: str, characteristic: str, level: str | None, statistic: str, unit: str,
                 frame: pd.DataFrame) -> dict:  # fmt: skip
    """One line from `frame` (is_target, w, v: the value, NaN when left out)."""
    row = {"section": section, "characteristic": characteristic, "level": level, "statistic": statistic,
           "unit": unit}  # fmt: skip
    sides = {"targets": frame[frame.is_target], "controls": frame[~frame.is_target]}
    for side, f in sides.items():
        known = f.v.dropna()
        if statistic == "n (%)":
            n = int(known.sum())
            row |= {f"{side}_n": n, f"{side}_denominator": len(known),
                    f"{side}_pct": 100 * n / len(known) if len(known) else 0.0, f"{side}_mean": None,
                    f"{side}_sd": None}  # fmt: skip
        else:
            row |= {f"{side}_n": len(known), f"{side}_denominator": len(f), f"{side}_pct": None,
                    f"{side}_mean": known.mean() if len(known) else None,
                    f"{side}_sd": known.std(ddof=1) if len(known) > 1 else None}  # fmt: skip
    nobody = statistic == "n (%)" and row["targets_n"] == 0 and row["controls_n"] == 0
    row["smd"] = 0.0 if nobody else weighted_smd(sides["targets"], sides["controls"])
    return row


def pandas_table1(features: pd.DataFrame, flags: pd.DataFrame) -> list[dict]:
    m = features[features.n_controls > 0].copy()
    m["w"] = [1.0 if t else 1.0 / k for t, k in zip(m.is_target, m.n_controls, strict=True)]
    reused = (~m.is_target).sum() > m[~m.is_target].person_id.nunique()
    unit = "set memberships" if reused else "persons"

    def frame(values) -> pd.DataFrame:
        return pd.DataFrame({"is_target": m.is_target.to_numpy(), "w": m.w.to_numpy(),
                             "v": pd.Series(values, dtype="float64").to_numpy()})  # fmt: skip

    def categorical(section, characteristic, column) -> list[dict]:
        levels = sorted(m[column].dropna().astype(str).unique())
        cat = m[column].astype("string")
        return [
            expected_row(section, characteristic, lv, "n (%)", unit, frame([None if pd.isna(x) else float(x == lv)
                                                                            for x in cat]))
            for lv in levels
        ]  # fmt: skip

    rows = [{"section": "N", "characteristic": "persons", "level": None, "statistic": "n", "unit": "persons",
             "targets_n": m[m.is_target].person_id.nunique(),
             "controls_n": m[~m.is_target].person_id.nunique()}]  # fmt: skip
    if reused:
        rows.append({"section": "N", "characteristic": "control set memberships", "level": None, "statistic": "n",
                     "unit": "set memberships", "targets_n": int(m.is_target.sum()),
                     "controls_n": int((~m.is_target).sum())})  # fmt: skip
    rows += categorical("matching keys", "sex", "sex")
    rows += categorical("matching keys", "age band", "age_band")
    rows += categorical("matching keys", "event year", "event_year")
    continuous = (("birth year", "birth_year", "years"), ("prior opioid fills", "prior_opioid_fills", "fills"),
                  ("highest MME/day", "max_mme_per_day", "MME/day"))  # fmt: skip
    for name, column, u in continuous:
        rows.append(expected_row("covariates", name, None, "mean (SD)", u, frame(m[column].astype("float64"))))
    rows.append(expected_row("covariates", "prior OUD", None, "n (%)", unit, frame(m.prior_oud.astype("float64"))))
    weights = m.set_index(["matched_set_id", "person_id"])[["w"]]
    for kind in ("group", "drug"):
        of_kind = flags[flags.kind == kind]
        for exposure in sorted(of_kind.exposure.unique()):
            x = of_kind[of_kind.exposure == exposure].join(weights, on=["matched_set_id", "person_id"], how="inner")
            values = pd.Series([None if pd.isna(e) else float(e) for e in x.exposed], dtype="float64")
            f = pd.DataFrame({"is_target": x.is_target.astype(bool).to_numpy(), "w": x.w.to_numpy(),
                              "v": values.to_numpy()})  # fmt: skip
            rows.append(expected_row("exposures", exposure, None, "n (%)", unit, f))
    for gene in GENES:
        column = m[f"{gene}_phenotype"]
        rows.append(expected_row("genotypes", f"{gene.upper()} genotyped", None, "n (%)", unit,
                                 frame(column.notna().astype("float64"))))  # fmt: skip
        rows += categorical("genotypes", f"{gene.upper()} phenotype", f"{gene}_phenotype")
    return rows


def test_table1_is_recomputed_from_the_features_and_flags_in_pandas(boosted):
    lake = LakeResource(lake_root=str(boosted.lake))
    con = duckdb.connect()
    exposures = datasets.analysis(COHORT, "exposures")
    features = con.sql(f"SELECT * FROM '{exposures.path(lake, filename=datasets.FEATURES_FILE)}'").df()
    flags = con.sql(
        f"SELECT matched_set_id, person_id, is_target, kind, exposure, exposed "
        f"FROM '{exposures.path(lake, filename=datasets.EXPOSURE_FLAGS_FILE)}' WHERE kind IN ('group', 'drug')"
    ).df()
    written = analysis_rows(boosted.lake, "balance", datasets.TABLE1_FILE)
    expected = pandas_table1(features, flags)
    assert [r["row_order"] for r in written] == list(range(1, len(written) + 1))
    assert [(r["section"], r["characteristic"], r["level"]) for r in written] == [
        (r["section"], r["characteristic"], r["level"]) for r in expected]  # fmt: skip
    for w, e in zip(written, expected, strict=True):
        where = (w["characteristic"], w["level"])
        assert (w["statistic"], w["unit"]) == (e["statistic"], e["unit"]), where
        for k in NUMBERS + FLOATS:
            if k not in e:  # the N rows give counts only
                assert w[k] is None, (where, k)
            elif e[k] is None or (isinstance(e[k], float) and math.isnan(e[k])):
                assert w[k] is None, (where, k, w[k])
            else:
                assert w[k] == pytest.approx(e[k], abs=1e-9), (where, k, w[k], e[k])
        assert w["targets_n"] == e["targets_n"] and w["controls_n"] == e["controls_n"], where
    # the boosted cohort: exclusive (one N row), full 1:5 sets, a share of persons genotyped
    assert written[0]["targets_n"] > 50 and written[0]["controls_n"] == 5 * written[0]["targets_n"]
    assert [r["characteristic"] for r in written if r["section"] == "N"] == ["persons"]
    assert {r["section"] for r in written} == {"N", "matching keys", "covariates", "exposures", "genotypes"}
    genotyped = next(r for r in written if r["characteristic"] == "CYP2D6 genotyped")
    assert 0 < genotyped["targets_pct"] < 100 and 0 < genotyped["controls_pct"] < 100
    assert sum(r["controls_n"] for r in written if r["characteristic"] == "CYP2D6 phenotype") == genotyped["controls_n"]
    planted = next(r for r in written if r["characteristic"] == "cyp2d6_opioid_functional_poor")
    assert planted["targets_pct"] > planted["controls_pct"] and planted["smd"] > 0.1
    # the SMD of every covariate balance.parquet has is Table 1's
    balance = {r["covariate"]: r["smd"] for r in analysis_rows(boosted.lake, "balance")}
    mine = balance_smds(written)
    assert set(balance) <= set(mine)
    for covariate, smd in balance.items():
        assert (smd is None) == (mine[covariate] is None), covariate
        assert smd is None or mine[covariate] == pytest.approx(smd, abs=1e-9), covariate


def test_the_exported_table1_csv_has_the_rows_of_table1(boosted):
    written = analysis_rows(boosted.lake, "balance", datasets.TABLE1_FILE)
    with open(export_dir(boosted.lake) / datasets.export_file(COHORT, "table1"), newline="") as f:
        exported = list(csv.DictReader(f))
    assert len(exported) == len(written) > 20
    assert list(exported[0]) == list(written[0])
    for e, w in zip(exported, written, strict=True):
        for k, v in w.items():
            if v is None:
                assert e[k] == "", (k, e[k])
            elif isinstance(v, float):
                assert float(e[k]) == pytest.approx(v, abs=1e-12), (k, e[k], v)
            else:
                assert e[k] == str(v), (k, e[k], v)


def test_the_balance_check_fails_when_table1_n_is_not_the_cohort(boosted, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(boosted.lake, lake)
    check = ("covariate_balance", "covariate_balance_matching_keys")
    good = evaluate_check(boosted.raw, lake, *check, COHORT)
    assert good.passed and meta(good, "table1_n_is_the_cohort") is True
    assert meta(good, "table1_target_persons") == meta(good, "cohort_target_persons") > 0
    assert meta(good, "table1_control_persons") == meta(good, "cohort_control_persons") > 0
    table1 = Path(datasets.analysis(COHORT, "balance").path(LakeResource(lake_root=str(lake)),
                                                          filename=datasets.TABLE1_FILE))  # fmt: skip
    rewrite_parquet(table1, "SELECT * REPLACE (CASE WHEN row_order = 1 THEN controls_n - 1 ELSE controls_n END "
                            "AS controls_n) FROM t")  # fmt: skip
    bad = evaluate_check(boosted.raw, lake, *check, COHORT)
    assert not bad.passed and meta(bad, "table1_n_is_the_cohort") is False
    assert meta(bad, "table1_control_persons") == meta(bad, "cohort_control_persons") - 1

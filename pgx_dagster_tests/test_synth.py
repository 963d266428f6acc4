"""pgx-synth: deterministic, and it plants the imperfections real extracts have."""

import json

import duckdb

from pgx_dagster.ops.synth import generate, main


def digest(folder):
    """Content of every table, rows in file order (Parquet bytes may differ for equal data)."""
    con = duckdb.connect(config={"threads": 1})
    out = {}
    for table in sorted(p.name for p in folder.iterdir() if p.is_dir()):
        out[table] = con.execute(
            f"SELECT count(*), md5(string_agg(CAST(x AS VARCHAR), '|')) "
            f"FROM read_parquet('{folder}/{table}/*.parquet') x"
        ).fetchone()
    return out


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    a = generate(300, [2016, 2017, 2018], 5, tmp_path / "a")
    b = generate(300, [2016, 2017, 2018], 5, tmp_path / "b")
    generate(300, [2016, 2017, 2018], 6, tmp_path / "c")
    strip = lambda m: {k: v for k, v in m.items() if k not in ("seconds", "claim_rows_per_second")}  # noqa: E731
    assert strip(a) == strip(b)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_cli_writes_manifest(tmp_path, capsys):
    main(["--members", "200", "--years", "2017-2018", "--out", str(tmp_path), "--seed", "3"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["persons"] == 200 and manifest["years"] == [2017, 2018]
    assert "rows/s" in capsys.readouterr().out


def test_planted_imperfections_are_present(synthetic_raw):
    raw = synthetic_raw.path
    con = duckdb.connect()
    med = f"read_parquet('{raw}/medical_claims/*.parquet')"
    rx = f"read_parquet('{raw}/pharmacy_claims/*.parquet')"
    elig = f"read_parquet('{raw}/member_eligibility/*.parquet')"
    link = f"read_parquet('{raw}/member_linkage/*.parquet')"
    q = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    assert q(f"SELECT count(*) FROM {med} WHERE diagnosis_code_1 LIKE '%.%'") > 0
    assert q(f"SELECT count(*) FROM {med} WHERE diagnosis_code_1 <> upper(diagnosis_code_1)") > 0
    assert q(f"SELECT count(*) FROM {med} WHERE length(revenue_code) = 3") > 0
    assert q(f"SELECT count(*) FROM {rx} WHERE ndc LIKE '%-%'") > 0
    assert q(f"SELECT count(*) FROM {rx} WHERE regexp_full_match(ndc, '[0-9]{{10}}')") > 0
    assert q(f"SELECT count(*) FROM {rx} WHERE days_supply < 0") > 0
    assert q(f"SELECT count(*) FROM (SELECT claim_id, claim_line FROM {med} GROUP BY ALL HAVING count(*) >= 3)") > 0
    assert q(f"SELECT count(*) FROM (SELECT person_id FROM {link} GROUP BY 1 HAVING count(*) > 1)") > 0
    assert q(f"SELECT count(*) FROM (SELECT member_id FROM {link} GROUP BY 1 HAVING count(DISTINCT payer_id) > 1)") > 0
    assert q(f"SELECT count(*) FROM {elig} WHERE sex IS NULL") > 0
    assert q(f"SELECT count(*) FROM {med} WHERE service_date > DATE '2090-01-01'") > 0
    # conflicting sex for a person across sources
    assert (
        q(f"""SELECT count(*) FROM (
        SELECT l.person_id FROM {elig} e JOIN {link} l USING (payer_id, member_id)
        WHERE e.sex IS NOT NULL GROUP BY 1 HAVING count(DISTINCT upper(e.sex)) > 1)""")
        > 0
    )
    m = synthetic_raw.manifest
    assert m["totals"]["opioid_ed_targets"] > 10 and m["persons_without_birth_year"] > 0

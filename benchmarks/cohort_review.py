"""How the matched sets hold up to a reviewer: the figures an independent review of the control
selection looks at, measured on a materialized lake. Prints a table and writes JSON.

    python -m benchmarks.cohort_review --lake data/lake [--cohort opioid_ed] [--json review.json]

- home years of persons enrolled in every study year, per seed, with the chi-square against uniform;
- selection: the chance of being a candidate by the number of years a person is active;
- observation at the index date: controls and targets enrolled with the look-back;
- look-back of targets (under 180 / 365 days of continuous enrolment before the index date);
- shortages against the whole eligible stratum;
- the counting grain: opioid ED visits per person-day.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from pgx_dagster import datasets
from pgx_dagster.cohort_definitions import load_all
from pgx_dagster.duck import DuckDBWorker, parquet_relation
from pgx_dagster.lake import LakeResource
from pgx_dagster.settings import event_years

SEEDS = [1, 42, 7777777]


def review(lake: str, cohort: str) -> dict:
    d = next(c for c in load_all() if c.name == cohort)
    years = event_years()
    out: dict = {"cohort": cohort, "design": d.design, "seed": d.seed, "years": years}
    with DuckDBWorker(threads=2).session() as s:
        root = LakeResource(lake_root=lake)
        s.view("demo", parquet_relation(datasets.DEMOGRAPHICS.files(root)))
        s.view("obs", parquet_relation(datasets.OBSERVATION_PERIOD.path(root)))
        s.view("c", parquet_relation(datasets.cohort(cohort).glob(root)))
        s.view("st", parquet_relation(datasets.cohort(cohort).glob(root, datasets.cohort_file(cohort, "strata"))))
        s.view("ev", parquet_relation(datasets.EVENTS.glob(root)))
        s.set_variables({"years": years})
        every_year = s.rows(
            "SELECT person_id FROM demo GROUP BY 1 HAVING count(DISTINCT event_year) = len(getvariable('years'))"
        )
        out["persons_in_every_year"] = len(every_year)
        homes = {}
        for seed in [d.seed, *SEEDS]:
            counts = s.execute(
                f"SELECT getvariable('years')[CAST(sample_key({seed}, person_id, 'home_year') % "
                "len(getvariable('years')) AS INTEGER) + 1] AS y, count(*) FROM "
                "(SELECT person_id FROM demo GROUP BY 1 HAVING count(DISTINCT event_year) = len(getvariable('years'))) "
                "GROUP BY 1 ORDER BY 1"
            ).fetchall()
            n = sum(c for _, c in counts)
            chi2 = sum((c - n / len(years)) ** 2 / (n / len(years)) for _, c in counts)
            homes[seed] = {"counts": {str(y): c for y, c in counts}, "chi2": round(chi2, 2)}
        out["home_years"] = homes
        # Selection: the chance of being a candidate, by the number of years a person is active (claims or
        # enrolment). Unbiased sampling gives 1 / (study years) whatever the activity. (A share of one-year
        # persons among the controls would mislead: a person enrolled for one calendar year never has a
        # 365-day look-back, so the design itself excludes them.)
        out["candidate_chance_by_years_active"] = {
            int(n): round(p, 4)
            for n, p in s.execute(f"""
                WITH py AS (SELECT DISTINCT person_id, event_year FROM demo),
                     active AS (SELECT person_id, count(*) AS n FROM py GROUP BY 1)
                SELECT a.n, avg((getvariable('years')[CAST(sample_key({d.seed}, py.person_id, 'home_year')
                                 % len(getvariable('years')) AS INTEGER) + 1] = py.event_year)::INT)
                FROM py JOIN active a USING (person_id) GROUP BY 1 ORDER BY 1""").fetchall()
        }
        out["observation"] = s.rows(f"""
            SELECT role, count(*) AS rows,
                   avg(EXISTS (SELECT 1 FROM obs o WHERE o.person_id = c.person_id
                               AND o.period_start <= c.index_date - {d.lookback_days}
                               AND o.period_end >= c.index_date)::INT) AS enrolled_with_lookback,
                   avg(EXISTS (SELECT 1 FROM obs o WHERE o.person_id = c.person_id AND o.period_start <= c.index_date
                               AND o.period_end >= c.index_date)::INT) AS enrolled_at_index,
                   avg(((SELECT coalesce(max(c.index_date - o.period_start), -1) FROM obs o
                         WHERE o.person_id = c.person_id AND c.index_date BETWEEN o.period_start AND o.period_end)
                        < 180)::INT) AS under_180_days_history
            FROM c GROUP BY role ORDER BY role""")
        out["shortage"] = s.rows("""
            SELECT sum(targets) AS targets, sum(shortage) AS shortage, sum(short_sets) AS short_sets,
                   sum(eligible_at_short_index) AS eligible_at_short_index,
                   sum(candidates_at_short_index) AS candidates_at_short_index FROM st""")[0]
        out["grain"] = s.rows("""
            SELECT count(*) AS opioid_ed_events, count(DISTINCT (person_id, event_date)) AS person_days,
                   sum(n_claims) AS claims
            FROM ev WHERE event_type = 'opioid_ed_visit'""")[0]
        # engine independence: the keys DuckDB computed are the documented sha256 ones
        sample = [r["person_id"] for r in every_year[:200]]
        mismatches = sum(
            s.scalar("SELECT sample_key(?, ?, 'home_year')", [d.seed, p])
            != int(hashlib.sha256(f"{d.seed}:{p}:home_year".encode()).hexdigest()[:16], 16)
            for p in sample
        )
        out["sha256_keys_checked"] = {"persons": len(sample), "mismatches": mismatches}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cohort_review", description=__doc__.split("\n\n")[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--cohort", default="opioid_ed")
    ap.add_argument("--json", dest="json_path")
    a = ap.parse_args(argv)
    result = review(a.lake, a.cohort)
    for key, value in result.items():
        print(f"{key:<26}{json.dumps(value, default=str)}")
    if a.json_path:
        Path(a.json_path).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

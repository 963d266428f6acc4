-- sex_observed: each person's consensus sex over all observations of all member ids and years: the
-- most frequent value; ties: latest year, then 'F' before 'M'. Input: obs.
SELECT person_id, sex
FROM (SELECT person_id, sex, sum(n) AS n, max(year) AS latest FROM obs WHERE sex IS NOT NULL GROUP BY ALL)
QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY n DESC, latest DESC NULLS LAST, sex) = 1

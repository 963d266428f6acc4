-- zip_year: each person-year's most frequent observed zip3 (ties: the smaller). Input: obs.
SELECT person_id, year, zip3
FROM (SELECT person_id, year, zip3, sum(n) AS n FROM obs WHERE zip3 IS NOT NULL AND year IS NOT NULL GROUP BY ALL)
QUALIFY row_number() OVER (PARTITION BY person_id, year ORDER BY n DESC, zip3) = 1

-- sex_imputed: a seeded draw of sex for every person with no sex observed anywhere, from the observed
-- distribution in the same age band x zip3 of the person's first active year (else the age band's,
-- else everyone's, else 1/2). Inputs: person_facts (every unit's), zip_imputed. Variable: seed.
WITH first_zip AS (  -- each person's zip3 of the first active year: observed, else drawn
    SELECT f.person_id, f.first_age_band, f.observed_sex, coalesce(f.first_zip3, zi.zip3) AS zip3
    FROM person_facts f
    LEFT JOIN zip_imputed zi USING (person_id)
    WHERE coalesce(f.first_zip3, zi.zip3) IS NOT NULL
),
sex_dist AS (
    SELECT first_age_band AS age_band, zip3, count(*) FILTER (WHERE observed_sex = 'F') AS n_f, count(*) AS n
    FROM first_zip
    WHERE observed_sex IS NOT NULL
    GROUP BY ALL
)
SELECT p.person_id,
       CASE WHEN seeded_uniform(getvariable('seed'), p.person_id, 'sex') <
                 coalesce(
                    (SELECT n_f / n FROM sex_dist d WHERE d.age_band = p.first_age_band AND d.zip3 = p.zip3),
                    (SELECT sum(n_f) / sum(n) FROM sex_dist d WHERE d.age_band = p.first_age_band),
                    (SELECT sum(n_f) / sum(n) FROM sex_dist),
                    0.5)
            THEN 'F' ELSE 'M' END AS sex
FROM first_zip p
WHERE p.observed_sex IS NULL

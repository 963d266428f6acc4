-- zip_imputed: a seeded draw of zip3 for every person with no zip3 observed anywhere, over all units.
-- Input: person_facts (every unit's). Variable: seed.
-- Extracts without zip codes (Tuva's is mostly blank, DE-SynPUF has none) often carry the state: a
-- person's zip3 is then drawn within the person's observed state. `basis` names the distribution
-- the zip3 was drawn from, so nobody mistakes it for an observation.
WITH zip_dist AS (  -- observed zip3 shares by the age band of the person's first active year
    SELECT first_age_band AS age_band, first_zip3 AS zip3, count(*) AS n
    FROM person_facts WHERE first_zip3 IS NOT NULL
    GROUP BY ALL
),
state_prefixes AS (SELECT state, zip3 FROM zip3_prefix_state),  -- every zip3 of each state (USPS prefixes)
-- The distributions a zip3 is drawn from, most specific first; a person draws from the first one
-- that exists for them: observed zip3s of the person's state; the state's prefixes (uniform);
-- observed zip3s of the person's age band; all observed zip3s; all US prefixes (uniform).
zip_pool AS (
    SELECT 1 AS level, 'state_observed' AS basis, sp.state AS key, d.zip3, sum(d.n) AS n
    FROM zip_dist d JOIN state_prefixes sp USING (zip3) GROUP BY ALL
    UNION ALL
    SELECT 2, 'state_prefixes', state, zip3, 1 FROM state_prefixes
    UNION ALL
    SELECT 3, 'age_band_observed', age_band, zip3, n FROM zip_dist
    UNION ALL
    SELECT 4, 'all_observed', '*', zip3, sum(n) FROM zip_dist GROUP BY zip3
    UNION ALL
    SELECT DISTINCT 5, 'national_prefixes', '*', zip3, 1 FROM state_prefixes
),
zip_cdf AS (
    SELECT level, basis, key, zip3,
           (sum(n) OVER w - n) / sum(n) OVER (PARTITION BY level, key) AS lo,
           sum(n) OVER w / sum(n) OVER (PARTITION BY level, key) AS hi
    FROM zip_pool
    WINDOW w AS (PARTITION BY level, key ORDER BY zip3)
),
zip_needed AS (  -- persons with no zip3 anywhere, and their key at each level
    SELECT p.person_id, lv.level,
           CASE WHEN lv.level <= 2 THEN p.state WHEN lv.level = 3 THEN p.first_age_band ELSE '*' END AS key
    FROM person_facts p
    CROSS JOIN range(1, 6) AS lv(level)
    WHERE NOT p.has_zip_year
),
zip_level AS (
    SELECT n.person_id, min(n.level) AS level, arg_min(n.key, n.level) AS key
    FROM zip_needed n
    WHERE EXISTS (SELECT 1 FROM zip_pool z WHERE z.level = n.level AND z.key = n.key)
    GROUP BY n.person_id
)
SELECT l.person_id, c.zip3, c.basis
FROM zip_level l
JOIN zip_cdf c ON c.level = l.level AND c.key = l.key
    AND seeded_uniform(getvariable('seed'), l.person_id, 'zip3') >= c.lo
    AND seeded_uniform(getvariable('seed'), l.person_id, 'zip3') < c.hi

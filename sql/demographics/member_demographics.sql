-- member_demographics: one row per active member-year - a member with a silver claim in the year, or
-- enrolled in it (an enrolled person without claims is still part of the population a control is
-- drawn from) - with the person's consensus demographics and where each value came from.
-- Inputs: silver_medical_all, silver_pharmacy_all, eligibility (intake/eligibility.sql), raw_enrollment, person_index,
-- zip3_state. Variables: seed, min_year, max_year.
--
-- Consensus (per person, across all member ids, all years, eligibility and claims):
--   sex        most frequent observed value; ties: latest year, then 'F' before 'M'.
--   birth_year person_index (most frequent eligibility value).
--   zip3       per person-year: most frequent zip3 observed that year; else the nearest year with
--              an observation (the later on a tie).
-- Provenance of a value for member m in year y:
--   observed          m's own records in y show the value;
--   member_consensus  m's records in other years (or a conflicting record resolved by consensus);
--   linked_person     only another member id of the same person shows it;
--   statistical       nothing observed for the person anywhere: a seeded draw (sex: from the
--                     observed distribution in the same age band x zip3; zip3: see zip_pool).
-- Extracts without zip codes (Tuva's is mostly blank, DE-SynPUF has none) often carry the state:
-- a person's zip3 is then drawn within the person's observed state. `zip3_imputed_from` names the
-- distribution each statistical zip3 was drawn from, so nobody mistakes it for an observation.
WITH enrolled AS (  -- member-years of enrolment in the event years, for members with a known birth year
    SELECT payer_id, member_id, person_id, event_year, age_band(event_year - birth_year) AS age_band
    FROM (SELECT p.payer_id, p.member_id, p.person_id, p.birth_year,
                 unnest(range(greatest(year(e.enrollment_start), getvariable('min_year'), p.birth_year),
                              least(year(e.enrollment_end), getvariable('max_year')) + 1)) AS event_year
          FROM raw_enrollment e
          JOIN person_index p ON p.payer_id = clean_text(e.payer_id) AND p.member_id = clean_text(e.member_id)
          WHERE p.birth_year IS NOT NULL AND p.in_eligibility AND NOT p.conflicting_linkage)
),
active AS (
    SELECT DISTINCT payer_id, member_id, person_id, event_year, age_band FROM silver_medical_all
    UNION
    SELECT DISTINCT payer_id, member_id, person_id, event_year, age_band FROM silver_pharmacy_all
    UNION
    SELECT payer_id, member_id, person_id, event_year, age_band FROM enrolled
),
eligibility_used AS (  -- usable eligibility rows of attributable members
    SELECT p.person_id, p.payer_id, p.member_id, e.coverage_year AS year,
           normalize_sex(e.sex) AS sex, zip3_of(e.zip) AS zip3, e.birth_year, upper(clean_text(e.state)) AS state
    FROM eligibility e
    JOIN person_index p ON p.payer_id = e.payer_id AND p.member_id = e.member_id
    WHERE e.quarantine_reason IS NULL AND NOT p.conflicting_linkage
),
obs AS (
    SELECT person_id, payer_id, member_id, year, sex, zip3 FROM eligibility_used
    UNION ALL
    SELECT person_id, payer_id, member_id, event_year, patient_sex, patient_zip3 FROM silver_medical_all
    UNION ALL
    SELECT person_id, payer_id, member_id, event_year, patient_sex, patient_zip3 FROM silver_pharmacy_all
),
persons AS (
    SELECT person_id, min(event_year) AS first_year, arg_min(age_band, event_year) AS first_age_band
    FROM active GROUP BY person_id
),
-- sex ------------------------------------------------------------------------------------------
sex_observed AS (
    SELECT person_id, sex
    FROM (SELECT person_id, sex, count(*) AS n, max(year) AS latest FROM obs WHERE sex IS NOT NULL GROUP BY ALL)
    QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY n DESC, latest DESC NULLS LAST, sex) = 1
),
-- zip3 -----------------------------------------------------------------------------------------
zip_year AS (
    SELECT person_id, year, zip3
    FROM (SELECT person_id, year, zip3, count(*) AS n FROM obs WHERE zip3 IS NOT NULL AND year IS NOT NULL GROUP BY ALL)
    QUALIFY row_number() OVER (PARTITION BY person_id, year ORDER BY n DESC, zip3) = 1
),
person_year AS (
    SELECT DISTINCT person_id, event_year, age_band FROM active
),
zip_observed AS (
    SELECT py.person_id, py.event_year, z.zip3
    FROM person_year py
    JOIN zip_year z ON z.person_id = py.person_id
    QUALIFY row_number() OVER (PARTITION BY py.person_id, py.event_year
                               ORDER BY abs(z.year - py.event_year), z.year DESC) = 1
),
-- statistical imputation where nothing was observed for the person ------------------------------
person_state AS (  -- the state in the person's eligibility, most frequent (then latest year)
    SELECT person_id, state
    FROM (SELECT person_id, state, count(*) AS n, max(year) AS latest FROM eligibility_used WHERE state IS NOT NULL GROUP BY ALL)
    QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY n DESC, latest DESC NULLS LAST, state) = 1
),
zip_dist AS (  -- observed zip3 shares by the age band of the person's first active year
    SELECT p.first_age_band AS age_band, z.zip3, count(*) AS n
    FROM persons p JOIN zip_observed z ON z.person_id = p.person_id AND z.event_year = p.first_year
    GROUP BY ALL
),
state_prefixes AS (  -- every zip3 of each state, from the USPS prefix ranges
    SELECT state, lpad(CAST(unnest(range(CAST(zip3_first AS INTEGER), CAST(zip3_last AS INTEGER) + 1)) AS VARCHAR), 3, '0')
               AS zip3
    FROM zip3_state
),
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
           CASE WHEN lv.level <= 2 THEN ps.state WHEN lv.level = 3 THEN p.first_age_band ELSE '*' END AS key
    FROM persons p
    LEFT JOIN person_state ps USING (person_id)
    CROSS JOIN range(1, 6) AS lv(level)
    WHERE p.person_id NOT IN (SELECT person_id FROM zip_year)
),
zip_level AS (
    SELECT n.person_id, min(n.level) AS level, arg_min(n.key, n.level) AS key
    FROM zip_needed n
    WHERE EXISTS (SELECT 1 FROM zip_pool z WHERE z.level = n.level AND z.key = n.key)
    GROUP BY n.person_id
),
zip_imputed AS (
    SELECT l.person_id, c.zip3, c.basis
    FROM zip_level l
    JOIN zip_cdf c ON c.level = l.level AND c.key = l.key
        AND seeded_uniform(getvariable('seed'), l.person_id, 'zip3') >= c.lo
        AND seeded_uniform(getvariable('seed'), l.person_id, 'zip3') < c.hi
),
person_zip AS (  -- the zip3 of every active person-year
    SELECT person_id, event_year, zip3 FROM zip_observed
    UNION ALL
    SELECT py.person_id, py.event_year, zi.zip3 FROM person_year py JOIN zip_imputed zi USING (person_id)
),
sex_dist AS (  -- observed sex by age band x zip3 of the person's first active year
    SELECT p.first_age_band AS age_band, pz.zip3,
           count(*) FILTER (WHERE s.sex = 'F') AS n_f, count(*) AS n
    FROM persons p
    JOIN sex_observed s USING (person_id)
    JOIN person_zip pz ON pz.person_id = p.person_id AND pz.event_year = p.first_year
    GROUP BY ALL
),
sex_imputed AS (
    SELECT p.person_id,
           CASE WHEN seeded_uniform(getvariable('seed'), p.person_id, 'sex') <
                     coalesce(
                        (SELECT n_f / n FROM sex_dist d WHERE d.age_band = p.first_age_band AND d.zip3 = pz.zip3),
                        (SELECT sum(n_f) / sum(n) FROM sex_dist d WHERE d.age_band = p.first_age_band),
                        (SELECT sum(n_f) / sum(n) FROM sex_dist),
                        0.5)
                THEN 'F' ELSE 'M' END AS sex
    FROM persons p
    JOIN person_zip pz ON pz.person_id = p.person_id AND pz.event_year = p.first_year
    WHERE p.person_id NOT IN (SELECT person_id FROM sex_observed)
),
person_sex AS (
    SELECT person_id, sex FROM sex_observed UNION ALL SELECT person_id, sex FROM sex_imputed
),
-- provenance ------------------------------------------------------------------------------------
member_obs AS (  -- which values each member showed, and in which years
    SELECT payer_id, member_id, year, sex, zip3, NULL::INTEGER AS birth_year FROM obs
    UNION ALL
    SELECT payer_id, member_id, year, NULL, NULL, birth_year FROM eligibility_used WHERE birth_year IS NOT NULL
),
resolved AS (
    SELECT a.payer_id, a.member_id, a.person_id, a.event_year, a.age_band,
           pi.birth_year, ps.sex, pz.zip3
    FROM active a
    JOIN person_index pi ON pi.payer_id = a.payer_id AND pi.member_id = a.member_id
    LEFT JOIN person_sex ps ON ps.person_id = a.person_id
    LEFT JOIN person_zip pz ON pz.person_id = a.person_id AND pz.event_year = a.event_year
),
flags AS (
    SELECT r.*,
           bool_or(mo.sex = r.sex AND mo.year = r.event_year) AS sex_same_year,
           bool_or(mo.sex <> r.sex AND mo.year = r.event_year) AS sex_conflict_same_year,
           bool_or(mo.zip3 = r.zip3 AND mo.year = r.event_year) AS zip_same_year,
           bool_or(mo.sex IS NOT NULL) AS member_any_sex,
           bool_or(mo.zip3 IS NOT NULL) AS member_any_zip,
           bool_or(mo.birth_year = r.birth_year AND mo.year = r.event_year) AS birth_same_year,
           bool_or(mo.birth_year <> r.birth_year AND mo.year = r.event_year) AS birth_conflict_same_year,
           bool_or(mo.birth_year = r.birth_year) AS birth_same_member
    FROM resolved r
    LEFT JOIN member_obs mo ON mo.payer_id = r.payer_id AND mo.member_id = r.member_id
    GROUP BY ALL
),
person_flags AS (
    SELECT r.person_id,
           bool_or(o.sex IS NOT NULL) AS any_sex,
           bool_or(o.zip3 IS NOT NULL) AS any_zip
    FROM (SELECT DISTINCT person_id FROM active) r
    LEFT JOIN obs o USING (person_id)
    GROUP BY ALL
)
SELECT f.person_id, f.payer_id, f.member_id, f.event_year, f.age_band,
       f.birth_year,
       -- observed only when the member's own records of the year agree; a conflict among them is
       -- resolved by the person's consensus, and says so
       CASE WHEN f.birth_same_year AND NOT coalesce(f.birth_conflict_same_year, FALSE) THEN 'observed'
            WHEN f.birth_same_member THEN 'member_consensus'
            ELSE 'linked_person' END AS birth_year_source,
       f.sex,
       CASE WHEN NOT coalesce(pf.any_sex, FALSE) THEN 'statistical'
            WHEN f.sex_same_year AND NOT coalesce(f.sex_conflict_same_year, FALSE) THEN 'observed'
            WHEN f.member_any_sex THEN 'member_consensus'
            ELSE 'linked_person' END AS sex_source,
       f.zip3,
       CASE WHEN NOT coalesce(pf.any_zip, FALSE) THEN 'statistical'
            WHEN f.zip_same_year THEN 'observed'
            WHEN f.member_any_zip THEN 'member_consensus'
            ELSE 'linked_person' END AS zip3_source,
       zi.basis AS zip3_imputed_from,
       coalesce(s.state, ps.state) AS state
FROM flags f
LEFT JOIN person_flags pf USING (person_id)
LEFT JOIN zip_imputed zi USING (person_id)
LEFT JOIN person_state ps USING (person_id)
LEFT JOIN zip3_state s ON f.zip3 BETWEEN s.zip3_first AND s.zip3_last
ORDER BY f.person_id, f.payer_id, f.member_id, f.event_year

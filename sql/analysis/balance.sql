-- Covariate balance between targets and controls: the standardized mean difference (SMD) of every
-- covariate - the matching keys (each age band, sex, each event year), birth year, prior opioid fills,
-- the highest MME/day, prior OUD, and every exposure - with the matched-set weights of ratio matching:
-- a target weighs 1, each control 1 / the controls of its set (MatchIt's weights for 1:k matching).
-- Sets without a control are left out (they cannot be compared). SMD = (mean of targets - weighted mean
-- of controls) / sqrt((variance of targets + weighted variance of controls) / 2); with no variance on
-- either side it is 0 when the means agree, and NULL (undefined: the groups differ entirely) when not.
-- A member whose exposure is unknown (exposed NULL: a drug-coverage gap in the window, no fill seen) is
-- left out of that exposure's row (targets, controls: those compared), its set's other members keep their
-- weights. Inputs: features, exposure_flags.
WITH members AS (
    SELECT f.*, CASE WHEN f.is_target THEN 1.0 ELSE 1.0 / f.n_controls END AS w
    FROM features f WHERE f.n_controls > 0
),
bands AS (SELECT DISTINCT age_band FROM members),
years AS (SELECT DISTINCT event_year FROM members),
covariates AS (
    SELECT m.is_target, m.w, 'matching_key' AS kind, 'age_band ' || b.age_band AS covariate,
           (m.age_band = b.age_band)::DOUBLE AS value
    FROM members m, bands b
    UNION ALL
    SELECT is_target, w, 'matching_key', 'sex F', (sex = 'F')::DOUBLE FROM members
    UNION ALL
    SELECT m.is_target, m.w, 'matching_key', 'event_year ' || y.event_year, (m.event_year = y.event_year)::DOUBLE
    FROM members m, years y
    UNION ALL
    SELECT is_target, w, 'covariate', 'birth_year', birth_year::DOUBLE FROM members
    UNION ALL
    SELECT is_target, w, 'covariate', 'prior_opioid_fills', prior_opioid_fills::DOUBLE FROM members
    UNION ALL
    SELECT is_target, w, 'covariate', 'max_mme_per_day', max_mme_per_day FROM members
    UNION ALL
    SELECT is_target, w, 'covariate', 'prior_oud', prior_oud::DOUBLE FROM members
    UNION ALL
    SELECT m.is_target, m.w, 'exposure', x.exposure, x.exposed::DOUBLE
    FROM members m
    JOIN exposure_flags x USING (matched_set_id, person_id)
    WHERE x.kind IN ('drug', 'group') AND x.exposed IS NOT NULL
),
moments AS (
    SELECT kind, covariate, is_target,
           sum(w * value) / sum(w) AS mean,
           sum(w * value * value) / sum(w) - (sum(w * value) / sum(w)) ^ 2 AS variance,
           count(*) AS n
    FROM covariates WHERE value IS NOT NULL GROUP BY ALL
)
-- rounded to 1e-10: weights of 1/k leave float noise (a balanced key would show |SMD| 1e-15)
SELECT t.kind, t.covariate, round(t.mean, 10) AS mean_targets, round(c.mean, 10) AS mean_controls,
       t.n AS targets, c.n AS controls,
       round(CASE WHEN abs(t.mean - c.mean) < 1e-12 THEN 0.0
                  WHEN greatest(t.variance, 0) + greatest(c.variance, 0) > 1e-12
                      THEN (t.mean - c.mean) / sqrt((greatest(t.variance, 0) + greatest(c.variance, 0)) / 2)
             END, 10) AS smd
FROM moments t
JOIN moments c ON c.kind = t.kind AND c.covariate = t.covariate AND NOT c.is_target
WHERE t.is_target
ORDER BY CASE t.kind WHEN 'matching_key' THEN 1 WHEN 'covariate' THEN 2 ELSE 3 END, t.covariate

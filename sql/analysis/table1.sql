-- Table 1 of a cohort: targets vs controls, one row per line of the table. Population: the members of
-- matched sets with at least one control, as the association and the balance analyse them.
--   N               distinct persons (statistic 'n'); under risk-set sampling (variable design = 'risk_set',
--                   or a control serving in several sets) a second row, control set memberships: every other
--                   row then counts set memberships (a control once per set it serves; unit 'set memberships')
--   matching keys   sex, age band, event year: n (%) of each level
--   covariates      birth year, prior opioid fills, highest MME/day: mean (SD); prior OUD: n (%)
--   exposures       every exposure of exposure_flags of kind group or drug: n (%) of the members whose exposure
--                   is known (an unknown one, exposed NULL, is left out of the denominator; `note` counts them)
--   genotypes       per gene: genotyped n (%) of all members, then each phenotype n (%) among the genotyped
-- n, denominator, pct (0-100), mean and sd (sample SD) are unweighted. The SMD is balance.sql's to the digit: the
-- matched-set weights (a target 1, a control 1 / the controls of its set), its formula, its zero-variance rule and
-- rounding; a level's SMD is that of its indicator. A level with nobody on either side: pct 0 and SMD 0.
-- A mean (SD) row: n the members with a value, denominator all members. Inputs: features, exposure_flags.
-- Variable: design (optional).
WITH members AS (
    SELECT f.*, CASE WHEN f.is_target THEN 1.0 ELSE 1.0 / f.n_controls END AS w
    FROM features f WHERE f.n_controls > 0
),
counts AS (
    SELECT count(DISTINCT person_id) FILTER (WHERE is_target) AS target_persons,
           count(DISTINCT person_id) FILTER (WHERE NOT is_target) AS control_persons,
           count(*) FILTER (WHERE is_target) AS target_rows,
           count(*) FILTER (WHERE NOT is_target) AS control_rows,
           (SELECT count(*) FROM features WHERE is_target AND n_controls = 0) AS targets_without_a_control
    FROM members
),
design AS (  -- risk-set sampling: a control may serve in several sets, so rows count set memberships
    SELECT coalesce(getvariable('design') = 'risk_set', FALSE) OR control_rows > control_persons AS per_membership,
           CASE WHEN coalesce(getvariable('design') = 'risk_set', FALSE) OR control_rows > control_persons
                THEN 'set memberships' ELSE 'persons' END AS count_unit
    FROM counts
),
-- per member and characteristic: its category (a categorical row) or its value (a mean or a yes/no row)
facts AS (
    SELECT m.is_target, m.w, f.*
    FROM members m,
         LATERAL (VALUES
             ('matching keys', 1, 'sex', m.sex, NULL::DOUBLE),
             ('matching keys', 2, 'age band', m.age_band, NULL),
             ('matching keys', 3, 'event year', CAST(m.event_year AS VARCHAR), NULL),
             ('covariates', 1, 'birth year', NULL, CAST(m.birth_year AS DOUBLE)),
             ('covariates', 2, 'prior opioid fills', NULL, CAST(m.prior_opioid_fills AS DOUBLE)),
             ('covariates', 3, 'highest MME/day', NULL, CAST(m.max_mme_per_day AS DOUBLE)),
             ('covariates', 4, 'prior OUD', NULL, CAST(m.prior_oud AS DOUBLE)),
             ('genotypes', 1, 'CYP2D6 genotyped', NULL, CAST(m.cyp2d6_phenotype IS NOT NULL AS DOUBLE)),
             ('genotypes', 2, 'CYP2D6 phenotype', m.cyp2d6_phenotype, NULL),
             ('genotypes', 3, 'CYP2C19 genotyped', NULL, CAST(m.cyp2c19_phenotype IS NOT NULL AS DOUBLE)),
             ('genotypes', 4, 'CYP2C19 phenotype', m.cyp2c19_phenotype, NULL),
             ('genotypes', 5, 'CYP2C9 genotyped', NULL, CAST(m.cyp2c9_phenotype IS NOT NULL AS DOUBLE)),
             ('genotypes', 6, 'CYP2C9 phenotype', m.cyp2c9_phenotype, NULL),
             ('genotypes', 7, 'SLCO1B1 genotyped', NULL, CAST(m.slco1b1_phenotype IS NOT NULL AS DOUBLE)),
             ('genotypes', 8, 'SLCO1B1 phenotype', m.slco1b1_phenotype, NULL),
             ('genotypes', 9, 'VKORC1 genotyped', NULL, CAST(m.vkorc1_phenotype IS NOT NULL AS DOUBLE)),
             ('genotypes', 10, 'VKORC1 phenotype', m.vkorc1_phenotype, NULL)
         ) f(section, c_ord, characteristic, category, value)
),
-- every row of the table but N, whether or not anyone has it (an empty cohort still lists its covariates)
row_keys AS (
    SELECT DISTINCT section, c_ord, characteristic, category AS level, 'n (%)' AS statistic, d.count_unit AS unit
    FROM facts, design d WHERE category IS NOT NULL
    UNION ALL
    SELECT k.section, k.c_ord, k.characteristic, NULL, k.statistic, coalesce(k.unit, d.count_unit)
    FROM (VALUES ('covariates', 1, 'birth year', 'mean (SD)', 'years'),
                 ('covariates', 2, 'prior opioid fills', 'mean (SD)', 'fills'),
                 ('covariates', 3, 'highest MME/day', 'mean (SD)', 'MME/day'),
                 ('covariates', 4, 'prior OUD', 'n (%)', NULL),
                 ('genotypes', 1, 'CYP2D6 genotyped', 'n (%)', NULL),
                 ('genotypes', 3, 'CYP2C19 genotyped', 'n (%)', NULL),
                 ('genotypes', 5, 'CYP2C9 genotyped', 'n (%)', NULL),
                 ('genotypes', 7, 'SLCO1B1 genotyped', 'n (%)', NULL),
                 ('genotypes', 9, 'VKORC1 genotyped', 'n (%)', NULL)) k(section, c_ord, characteristic, statistic, unit),
         design d
    UNION ALL
    SELECT DISTINCT 'exposures', CASE kind WHEN 'group' THEN 1 ELSE 2 END, exposure, NULL, 'n (%)', d.count_unit
    FROM exposure_flags, design d WHERE kind IN ('group', 'drug')
),
-- per row and member: the value the row describes (a level: its indicator); NULL leaves the member out of the
-- row's denominator (a category unknown, e.g. not genotyped; an exposure unknown)
items AS (
    SELECT k.section, k.characteristic, k.level, f.is_target, f.w,
           CASE WHEN k.level IS NULL THEN f.value WHEN f.category IS NOT NULL THEN CAST(f.category = k.level AS DOUBLE)
           END AS value
    FROM row_keys k JOIN facts f USING (section, c_ord, characteristic)
    UNION ALL
    SELECT 'exposures', x.exposure, NULL, m.is_target, m.w, CAST(x.exposed AS DOUBLE)
    FROM members m
    JOIN exposure_flags x USING (matched_set_id, person_id)
    WHERE x.kind IN ('group', 'drug')
),
moments AS (
    SELECT section, characteristic, level, is_target,
           count(*) AS members, count(value) AS known, sum(value) AS total, avg(value) AS mean,
           stddev_samp(value) AS sd,
           -- balance.sql's weighted moments, over the members with a value
           sum(w * value) / sum(w) FILTER (WHERE value IS NOT NULL) AS w_mean,
           sum(w * value * value) / sum(w) FILTER (WHERE value IS NOT NULL)
               - (sum(w * value) / sum(w) FILTER (WHERE value IS NOT NULL)) ^ 2 AS w_variance
    FROM items GROUP BY ALL
),
described AS (
    SELECT CASE k.section WHEN 'matching keys' THEN 2 WHEN 'covariates' THEN 3 WHEN 'exposures' THEN 4 ELSE 5 END
               AS s_ord,
           k.c_ord, k.section, k.characteristic, k.level, k.statistic, k.unit,
           CASE WHEN k.statistic = 'n (%)' THEN coalesce(CAST(t.total AS BIGINT), 0) ELSE coalesce(t.known, 0) END
               AS targets_n,
           CASE WHEN k.statistic = 'n (%)' THEN coalesce(t.known, 0) ELSE coalesce(t.members, 0) END
               AS targets_denominator,
           CASE WHEN k.statistic = 'n (%)' THEN coalesce(100.0 * t.total / nullif(t.known, 0), 0.0) END AS targets_pct,
           CASE WHEN k.statistic = 'mean (SD)' THEN t.mean END AS targets_mean,
           CASE WHEN k.statistic = 'mean (SD)' THEN t.sd END AS targets_sd,
           CASE WHEN k.statistic = 'n (%)' THEN coalesce(CAST(c.total AS BIGINT), 0) ELSE coalesce(c.known, 0) END
               AS controls_n,
           CASE WHEN k.statistic = 'n (%)' THEN coalesce(c.known, 0) ELSE coalesce(c.members, 0) END
               AS controls_denominator,
           CASE WHEN k.statistic = 'n (%)' THEN coalesce(100.0 * c.total / nullif(c.known, 0), 0.0) END AS controls_pct,
           CASE WHEN k.statistic = 'mean (SD)' THEN c.mean END AS controls_mean,
           CASE WHEN k.statistic = 'mean (SD)' THEN c.sd END AS controls_sd,
           -- rounded to 1e-10 as balance.sql: weights of 1/k leave float noise
           round(CASE WHEN k.statistic = 'n (%)' AND coalesce(t.total, 0) = 0 AND coalesce(c.total, 0) = 0 THEN 0.0
                      WHEN coalesce(t.known, 0) = 0 OR coalesce(c.known, 0) = 0 THEN NULL
                      WHEN abs(t.w_mean - c.w_mean) < 1e-12 THEN 0.0
                      WHEN greatest(t.w_variance, 0) + greatest(c.w_variance, 0) > 1e-12
                          THEN (t.w_mean - c.w_mean)
                               / sqrt((greatest(t.w_variance, 0) + greatest(c.w_variance, 0)) / 2)
                 END, 10) AS smd,
           CASE WHEN k.section = 'exposures' AND coalesce(t.members - t.known, 0) + coalesce(c.members - c.known, 0) > 0
                    THEN printf('exposure unknown for %d targets and %d controls: left out of the denominator',
                                coalesce(t.members - t.known, 0), coalesce(c.members - c.known, 0))
                WHEN k.statistic = 'mean (SD)'
                     AND coalesce(t.members - t.known, 0) + coalesce(c.members - c.known, 0) > 0
                    THEN printf('no value for %d targets and %d controls', coalesce(t.members - t.known, 0),
                                coalesce(c.members - c.known, 0))
                WHEN k.section = 'genotypes' AND k.level IS NOT NULL THEN 'among the genotyped'
           END AS note
    FROM row_keys k
    LEFT JOIN moments t ON t.section = k.section AND t.characteristic = k.characteristic
        AND t.level IS NOT DISTINCT FROM k.level AND t.is_target
    LEFT JOIN moments c ON c.section = k.section AND c.characteristic = k.characteristic
        AND c.level IS NOT DISTINCT FROM k.level AND NOT c.is_target
),
n_rows AS (
    SELECT 1 AS s_ord, 1 AS c_ord, 'N' AS section, 'persons' AS characteristic, NULL::VARCHAR AS level, 'n' AS statistic,
           'persons' AS unit, c.target_persons AS targets_n, NULL::BIGINT AS targets_denominator,
           NULL::DOUBLE AS targets_pct, NULL::DOUBLE AS targets_mean, NULL::DOUBLE AS targets_sd,
           c.control_persons AS controls_n, NULL::BIGINT AS controls_denominator, NULL::DOUBLE AS controls_pct,
           NULL::DOUBLE AS controls_mean, NULL::DOUBLE AS controls_sd, NULL::DOUBLE AS smd,
           'members of matched sets with at least one control, as the association and the balance analyse them'
               || CASE WHEN c.targets_without_a_control > 0
                       THEN printf('; left out, targets without a control: %d', c.targets_without_a_control)
                       ELSE '' END AS note
    FROM counts c
    UNION ALL
    SELECT 1, 2, 'N', 'control set memberships', NULL, 'n', 'set memberships', c.target_rows, NULL, NULL, NULL,
           NULL, c.control_rows, NULL, NULL, NULL, NULL, NULL,
           'risk-set sampling: a control may serve in several sets; the rows below count set memberships'
    FROM counts c, design d WHERE d.per_membership
)
SELECT CAST(row_number() OVER (ORDER BY s_ord, c_ord, characteristic, level NULLS FIRST) AS INTEGER) AS row_order,
       section, characteristic, level, statistic, unit,
       CAST(targets_n AS BIGINT) AS targets_n, CAST(targets_denominator AS BIGINT) AS targets_denominator,
       CAST(targets_pct AS DOUBLE) AS targets_pct, CAST(targets_mean AS DOUBLE) AS targets_mean,
       CAST(targets_sd AS DOUBLE) AS targets_sd,
       CAST(controls_n AS BIGINT) AS controls_n, CAST(controls_denominator AS BIGINT) AS controls_denominator,
       CAST(controls_pct AS DOUBLE) AS controls_pct, CAST(controls_mean AS DOUBLE) AS controls_mean,
       CAST(controls_sd AS DOUBLE) AS controls_sd, CAST(smd AS DOUBLE) AS smd, CAST(note AS VARCHAR) AS note
FROM (SELECT * FROM n_rows UNION ALL BY NAME SELECT * FROM described)
ORDER BY row_order

-- The merged cohort with its features: one row per cohort row (a member of a matched set), every
-- partition. Exposures are in the exposure window before the set's index date.
--   is_target                  the outcome of the conditional analysis
--   birth_year                 from member_demographics (the person's consensus)
--   prior_opioid_fills         opioid fills (any opioid) in the window; max_mme_per_day their highest MME/day
--   prior_oud                  an opioid use disorder event in the window
--   cyp2d6_opioid              a fill of codeine, tramadol, hydrocodone or oxycodone in the window
--   strong_cyp2d6_inhibitor    a fill of paroxetine, fluoxetine, bupropion or quinidine in the window
--   cyp2d6_opioid_with_inhibitor  the days supplied of the two overlap (phenoconversion)
--   cpic_drugs                 every drug of sql/codesets/pgx_drugs.csv filled in the window
--   <gene>_phenotype           the person's CPIC phenotype, when genotypes are given: one column per gene
--                              of sql/codesets/pgx_drugs.csv (a new gene there needs its column here)
--   cyp2d6_opioid_functional_poor  a CYP2D6 opioid with a poor-metaboliser phenotype or an overlapping
--                              strong inhibitor: a genetic or drug-induced poor metaboliser on the drug.
--                              Complete case: NULL (unknown) for a person without a CYP2D6 genotype, never
--                              "not a poor metaboliser"; the all-persons definition (ungenotyped counted as
--                              not poor) is a sensitivity analysis (sql/analysis/sensitivity_flags.sql)
--   drug_coverage_gap_in_window  the window meets a day the person was observed without drug coverage
--                              (drug_coverage_gap): a fill then could not be seen. The four exposure groups
--                              above are then TRUE when seen and otherwise NULL (unknown), never FALSE;
--                              cpic_drugs, the counts and the days are what was seen (exposure_flags.sql
--                              makes a drug not in cpic_drugs unknown the same way)
-- Inputs: members, fills, opioid_fills, oud_events, demographics, genotypes, drug_coverage_gap.
-- Variable: exposure_window_days.
WITH window_events AS (
    SELECT m.matched_set_id, m.person_id, e.event_type, e.mme_per_day
    FROM members m
    JOIN (SELECT person_id, event_date, 'opioid_fill' AS event_type, mme_per_day FROM opioid_fills
          UNION ALL SELECT person_id, event_date, 'opioid_use_disorder', NULL FROM oud_events) e
        ON e.person_id = m.person_id
        AND e.event_date >= m.index_date - CAST(getvariable('exposure_window_days') AS INTEGER)
        AND e.event_date < m.index_date
),
events_per_member AS (
    SELECT matched_set_id, person_id,
           count(*) FILTER (WHERE event_type = 'opioid_fill') AS prior_opioid_fills,
           coalesce(max(mme_per_day), 0) AS max_mme_per_day,
           bool_or(event_type = 'opioid_use_disorder') AS prior_oud
    FROM window_events GROUP BY ALL
),
grouped AS (
    SELECT f.*, d.exposure_group FROM fills f
    JOIN (SELECT DISTINCT ingredient, exposure_group FROM pgx_drugs) d USING (ingredient)
),
opioid_inhibitor_overlap AS (  -- a CYP2D6 opioid and a strong inhibitor supplied on a common day
    SELECT DISTINCT o.matched_set_id, o.person_id
    FROM grouped o
    JOIN grouped i ON i.matched_set_id = o.matched_set_id AND i.person_id = o.person_id
        AND i.exposure_group = 'strong_cyp2d6_inhibitor' AND i.fill_date <= o.supply_end AND o.fill_date <= i.supply_end
    WHERE o.exposure_group = 'cyp2d6_opioid'
),
drugs_per_member AS (
    SELECT matched_set_id, person_id,
           count(*) FILTER (WHERE exposure_group = 'cyp2d6_opioid') > 0 AS cyp2d6_opioid,
           CAST(coalesce(sum(days_supply) FILTER (WHERE exposure_group = 'cyp2d6_opioid'), 0) AS BIGINT)
               AS cyp2d6_opioid_days,
           count(*) FILTER (WHERE exposure_group = 'strong_cyp2d6_inhibitor') > 0 AS strong_cyp2d6_inhibitor,
           list(DISTINCT ingredient ORDER BY ingredient) AS cpic_drugs
    FROM grouped GROUP BY ALL
),
persons AS (SELECT person_id, any_value(birth_year) AS birth_year FROM demographics GROUP BY 1),
phenotypes AS (
    SELECT person_id,
           any_value(phenotype) FILTER (WHERE gene = 'CYP2D6') AS cyp2d6_phenotype,
           any_value(phenotype) FILTER (WHERE gene = 'CYP2C19') AS cyp2c19_phenotype,
           any_value(phenotype) FILTER (WHERE gene = 'CYP2C9') AS cyp2c9_phenotype,
           any_value(phenotype) FILTER (WHERE gene = 'SLCO1B1') AS slco1b1_phenotype,
           any_value(phenotype) FILTER (WHERE gene = 'VKORC1') AS vkorc1_phenotype
    FROM genotypes GROUP BY person_id
),
gap_in_window AS (  -- a gap meets the window [index_date - exposure_window_days, index_date)
    SELECT DISTINCT m.matched_set_id, m.person_id
    FROM members m
    JOIN drug_coverage_gap g ON g.person_id = m.person_id
        AND g.gap_start < m.index_date
        AND g.gap_end >= m.index_date - CAST(getvariable('exposure_window_days') AS INTEGER)
),
seen AS (  -- the exposure groups as seen: TRUE with a fill (or two overlapping), else FALSE
    SELECT m.matched_set_id, m.person_id, w.person_id IS NOT NULL AS gap,
           coalesce(d.cyp2d6_opioid, FALSE) AS cyp2d6_opioid,
           coalesce(d.strong_cyp2d6_inhibitor, FALSE) AS strong_cyp2d6_inhibitor,
           o.person_id IS NOT NULL AS cyp2d6_opioid_with_inhibitor,
           coalesce(d.cyp2d6_opioid, FALSE)
               AND (coalesce(g.cyp2d6_phenotype = 'Poor Metabolizer', FALSE) OR o.person_id IS NOT NULL)
               AS cyp2d6_opioid_functional_poor  -- as seen; NULL below without a CYP2D6 genotype
    FROM members m
    LEFT JOIN drugs_per_member d USING (matched_set_id, person_id)
    LEFT JOIN opioid_inhibitor_overlap o USING (matched_set_id, person_id)
    LEFT JOIN phenotypes g USING (person_id)
    LEFT JOIN gap_in_window w USING (matched_set_id, person_id)
)
SELECT m.matched_set_id, m.person_id, m.role, m.role = 'target' AS is_target, m.index_date, m.age_band,
       m.event_year, m.sex, m.n_controls, p.birth_year,
       coalesce(e.prior_opioid_fills, 0) AS prior_opioid_fills,
       coalesce(e.max_mme_per_day, 0) AS max_mme_per_day,
       coalesce(e.prior_oud, FALSE) AS prior_oud,
       -- seen, or else unknown with a gap in the window (CASE without ELSE: NULL)
       CASE WHEN x.cyp2d6_opioid THEN TRUE WHEN NOT x.gap THEN FALSE END AS cyp2d6_opioid,
       coalesce(d.cyp2d6_opioid_days, 0) AS cyp2d6_opioid_days,
       CASE WHEN x.strong_cyp2d6_inhibitor THEN TRUE WHEN NOT x.gap THEN FALSE END AS strong_cyp2d6_inhibitor,
       CASE WHEN x.cyp2d6_opioid_with_inhibitor THEN TRUE WHEN NOT x.gap THEN FALSE END
           AS cyp2d6_opioid_with_inhibitor,
       coalesce(d.cpic_drugs, []::VARCHAR[]) AS cpic_drugs,
       g.cyp2d6_phenotype, g.cyp2c19_phenotype, g.cyp2c9_phenotype, g.slco1b1_phenotype, g.vkorc1_phenotype,
       CASE WHEN g.cyp2d6_phenotype IS NULL THEN NULL  -- not genotyped: unknown (complete case)
            WHEN x.cyp2d6_opioid_functional_poor THEN TRUE WHEN NOT x.gap THEN FALSE END
           AS cyp2d6_opioid_functional_poor,
       x.gap AS drug_coverage_gap_in_window
FROM members m
LEFT JOIN events_per_member e USING (matched_set_id, person_id)
LEFT JOIN drugs_per_member d USING (matched_set_id, person_id)
JOIN seen x USING (matched_set_id, person_id)
LEFT JOIN persons p USING (person_id)
LEFT JOIN phenotypes g USING (person_id)
ORDER BY m.matched_set_id, m.role DESC, m.person_id

-- The completeness check of pgx_exposures: one feature row per cohort row, none missing or extra, no
-- row without its demographics, every exposure flagged for every member; an exposure unknown (NULL) only
-- when a drug-coverage gap meets the member's window, and then a drug or group never unexposed (FALSE: no
-- fill was seen, but none could be; a drug x phenotype may be, the phenotype being another). A genotype-based
-- exposure (its `gene` set) is unknown for every member without a genotype of the gene (complete case) and
-- known for every member with one (but for a gap): never "not a poor metaboliser" for want of a genotype.
-- Inputs: members (the cohort), features, exposure_flags.
WITH flags AS (
    SELECT x.kind, x.gene, x.exposed, f.drug_coverage_gap_in_window AS gap,
           CASE x.gene WHEN 'CYP2D6' THEN f.cyp2d6_phenotype WHEN 'CYP2C19' THEN f.cyp2c19_phenotype
                WHEN 'CYP2C9' THEN f.cyp2c9_phenotype WHEN 'SLCO1B1' THEN f.slco1b1_phenotype
                WHEN 'VKORC1' THEN f.vkorc1_phenotype END IS NOT NULL AS genotyped
    FROM exposure_flags x JOIN features f USING (matched_set_id, person_id)
)
SELECT (SELECT count(*) FROM members) AS cohort_rows,
       (SELECT count(*) FROM features) AS feature_rows,
       (SELECT count(*) FROM (SELECT matched_set_id, person_id FROM members
                              EXCEPT SELECT matched_set_id, person_id FROM features)) AS rows_without_features,
       (SELECT count(*) FROM (SELECT matched_set_id, person_id FROM features
                              EXCEPT SELECT matched_set_id, person_id FROM members)) AS rows_not_in_the_cohort,
       (SELECT count(*) FROM features WHERE birth_year IS NULL OR sex IS NULL OR age_band IS NULL
            OR is_target IS NULL OR cpic_drugs IS NULL OR drug_coverage_gap_in_window IS NULL)
      AS rows_missing_a_feature,
       (SELECT count(*) FROM (SELECT exposure FROM exposure_flags GROUP BY 1
                              HAVING count(*) <> (SELECT count(*) FROM features))) AS exposures_not_for_everyone,
       (SELECT count(*) FROM exposure_flags WHERE exposed IS NULL) AS flags_unknown,
       (SELECT count(*) FROM flags WHERE exposed IS NULL AND NOT gap AND NOT (gene IS NOT NULL AND NOT genotyped))
      AS flags_unknown_without_a_gap,
       (SELECT count(*) FROM flags WHERE exposed IS NOT NULL AND gene IS NOT NULL AND NOT genotyped)
      AS flags_known_without_a_genotype,
       (SELECT count(*) FROM flags WHERE NOT exposed AND kind IN ('drug', 'group') AND gap)
      AS flags_unexposed_despite_a_gap

-- The completeness check of pgx_exposures: one feature row per cohort row, none missing or extra, no
-- row without its demographics, every exposure flagged for every member; an exposure unknown (NULL) only
-- when a drug-coverage gap meets the member's window, and then a drug or group never unexposed (FALSE: no
-- fill was seen, but none could be; a drug x phenotype may be, the phenotype being another).
-- Inputs: members (the cohort), features, exposure_flags.
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
       (SELECT count(*) FROM exposure_flags x JOIN features f USING (matched_set_id, person_id)
        WHERE x.exposed IS NULL AND NOT f.drug_coverage_gap_in_window) AS flags_unknown_without_a_gap,
       (SELECT count(*) FROM exposure_flags x JOIN features f USING (matched_set_id, person_id)
        WHERE NOT x.exposed AND x.kind IN ('drug', 'group') AND f.drug_coverage_gap_in_window)
      AS flags_unexposed_despite_a_gap

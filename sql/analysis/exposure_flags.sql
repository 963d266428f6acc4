-- Every exposure the association is estimated for, for every member of every matched set: exposed or
-- not. Exposures: each drug of pgx_drugs (`drug:<ingredient>`); the groups of features.sql; and, when
-- genotypes are given, each drug x phenotype of a gene the drug has CPIC guidance for
-- (`drug:<ingredient> x <GENE> <phenotype>`: the drug in the window and that phenotype).
-- Unknown (exposed NULL): a member without a fill of the drug whose window meets a drug-coverage gap
-- (features.drug_coverage_gap_in_window) - a fill then could not be seen. A group is as features.sql gives it
-- (NULL there the same way, and cyp2d6_opioid_functional_poor NULL without a CYP2D6 genotype: its `gene`
-- is CYP2D6); a drug x phenotype is the drug's flag AND the phenotype, among the persons genotyped for its
-- gene (complete case: NULL without a genotype of the gene), so a genotyped member without the phenotype is
-- unexposed (FALSE) whatever the drug, and one with it is as unknown as the drug.
-- Inputs: features (analysis/features.sql), pgx_drugs, genotypes. Written straight to its file and not sorted:
-- at a cohort's size (members x exposures) a temp table or a sort of it ran out of a worker's memory, and every
-- reader orders what it needs (association_rows, the checks).
WITH drugs AS (SELECT DISTINCT ingredient FROM pgx_drugs),
drug_phenotypes AS (
    SELECT DISTINCT d.ingredient, d.gene, g.phenotype
    FROM pgx_drugs d JOIN genotypes g ON g.gene = d.gene
    WHERE d.role = 'substrate'
      -- a gene the merged cohort has a phenotype column for (features.sql), so the export reproduces it
      AND d.gene IN ('CYP2D6', 'CYP2C19', 'CYP2C9', 'SLCO1B1', 'VKORC1')
),
member_phenotypes AS (
    SELECT f.matched_set_id, f.person_id, g.gene, g.phenotype
    FROM features f JOIN genotypes g USING (person_id)
)
SELECT f.matched_set_id, f.person_id, f.is_target, 'drug' AS kind, 'drug:' || d.ingredient AS exposure,
       NULL::VARCHAR AS gene, NULL::VARCHAR AS phenotype,
       CASE WHEN list_contains(f.cpic_drugs, d.ingredient) THEN TRUE WHEN NOT f.drug_coverage_gap_in_window THEN FALSE
       END AS exposed
FROM features f, drugs d
UNION ALL
SELECT f.matched_set_id, f.person_id, f.is_target, 'group', g.exposure,
       CASE WHEN g.exposure = 'cyp2d6_opioid_functional_poor' THEN 'CYP2D6' END, NULL, g.exposed
FROM features f,
     LATERAL (VALUES ('cyp2d6_opioid', f.cyp2d6_opioid),
                     ('strong_cyp2d6_inhibitor', f.strong_cyp2d6_inhibitor),
                     ('cyp2d6_opioid_with_inhibitor', f.cyp2d6_opioid_with_inhibitor),
                     ('cyp2d6_opioid_functional_poor', f.cyp2d6_opioid_functional_poor)) g(exposure, exposed)
UNION ALL
SELECT f.matched_set_id, f.person_id, f.is_target, 'drug_phenotype',
       'drug:' || dp.ingredient || ' x ' || dp.gene || ' ' || dp.phenotype, dp.gene, dp.phenotype,
       CASE WHEN mp.phenotype IS NULL THEN NULL  -- no genotype of the gene: unknown (complete case)
            ELSE CASE WHEN list_contains(f.cpic_drugs, dp.ingredient) THEN TRUE
                      WHEN NOT f.drug_coverage_gap_in_window THEN FALSE END
                 AND mp.phenotype = dp.phenotype END
FROM features f
CROSS JOIN drug_phenotypes dp
LEFT JOIN member_phenotypes mp ON mp.matched_set_id = f.matched_set_id AND mp.person_id = f.person_id
    AND mp.gene = dp.gene

-- Every exposure's flags again, from the exported CSV alone: a group from its column, a drug from
-- cpic_drugs, a drug x phenotype from cpic_drugs and the gene's phenotype column (unknown without one). The exposures (kind,
-- name, gene, phenotype) are those of the association. A drug not in cpic_drugs is unknown (NULL) when the
-- window meets a drug-coverage gap (drug_coverage_gap_in_window), as exposure_flags.sql has it; a group's
-- column is NULL then already. Inputs: exported, association.
SELECT e.matched_set_id, e.person_id, e.is_target, a.kind, a.exposure, a.gene, a.phenotype,
       CASE a.kind
           WHEN 'group' THEN CASE a.exposure
               WHEN 'cyp2d6_opioid' THEN e.cyp2d6_opioid
               WHEN 'strong_cyp2d6_inhibitor' THEN e.strong_cyp2d6_inhibitor
               WHEN 'cyp2d6_opioid_with_inhibitor' THEN e.cyp2d6_opioid_with_inhibitor
               WHEN 'cyp2d6_opioid_functional_poor' THEN e.cyp2d6_opioid_functional_poor END
           WHEN 'drug' THEN CASE WHEN list_contains(e.cpic_drugs, substr(a.exposure, 6)) THEN TRUE
                                 WHEN NOT e.drug_coverage_gap_in_window THEN FALSE END
           -- NULL without a genotype of the gene (complete case), as exposure_flags.sql has it
           ELSE CASE WHEN g.phenotype IS NOT NULL THEN
                    CASE WHEN list_contains(e.cpic_drugs, split_part(substr(a.exposure, 6), ' x ', 1)) THEN TRUE
                         WHEN NOT e.drug_coverage_gap_in_window THEN FALSE END
                    AND a.phenotype = g.phenotype END
       END AS exposed
FROM exported e
CROSS JOIN association a
CROSS JOIN LATERAL (SELECT CASE a.gene
    WHEN 'CYP2D6' THEN e.cyp2d6_phenotype WHEN 'CYP2C19' THEN e.cyp2c19_phenotype
    WHEN 'CYP2C9' THEN e.cyp2c9_phenotype WHEN 'SLCO1B1' THEN e.slco1b1_phenotype
    WHEN 'VKORC1' THEN e.vkorc1_phenotype END AS phenotype) g

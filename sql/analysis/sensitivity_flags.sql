-- The exposure flags of the sensitivity analyses on the primary cohort, one row per analysis, member and
-- exposure (the columns of exposure_flags.sql plus `analysis`); the other design is estimated on its own
-- matched sets (pgx_dagster/stages/analysis.py). Unknown (NULL) stays unknown in every analysis.
--   all_persons_genotype   the genotype-based exposures (a `gene`) with persons not genotyped counted as
--                          not having the phenotype: a CYP2D6 opioid user without a genotype is a functional
--                          poor metaboliser only by an overlapping inhibitor, never by genotype; a drug x
--                          phenotype is FALSE for them. The definition before complete case.
--   excluding_imputed_sex  the primary flags, without the matched sets in which a member's sex in the set's
--                          year was drawn statistically (member_demographics.sex_source = 'statistical'):
--                          such a member may sit in the wrong sex stratum.
--   two_fills              use = at least 2 fills in the window: an exposure seen with a single fill is
--                          unexposed (unknown when a drug-coverage gap meets the window: the second fill
--                          could not be seen). A group counts the fills of its drugs; the opioid-inhibitor
--                          overlap needs 2 of each; a functional poor metaboliser 2 opioid fills and a
--                          poor-metaboliser genotype or 2 inhibitor fills.
-- Inputs: features, exposure_flags, exposures (fills per member and drug), genotypes, demographics.
WITH genotyped AS (SELECT DISTINCT person_id, gene FROM genotypes),
imputed_sex_sets AS (
    SELECT DISTINCT f.matched_set_id
    FROM features f
    JOIN demographics d ON d.person_id = f.person_id AND d.event_year = f.event_year
    WHERE d.sex_source = 'statistical'
),
group_fills AS (
    SELECT matched_set_id, person_id,
           coalesce(sum(fills) FILTER (WHERE exposure_group = 'cyp2d6_opioid'), 0) AS opioid_fills,
           coalesce(sum(fills) FILTER (WHERE exposure_group = 'strong_cyp2d6_inhibitor'), 0) AS inhibitor_fills
    FROM exposures GROUP BY ALL
),
flags AS (
    SELECT x.*, f.drug_coverage_gap_in_window AS gap, f.cyp2d6_phenotype, f.cyp2d6_opioid_with_inhibitor,
           CASE WHEN x.kind = 'drug' THEN substr(x.exposure, 6)
                WHEN x.kind = 'drug_phenotype' THEN split_part(substr(x.exposure, 6), ' x ', 1) END AS ingredient
    FROM exposure_flags x
    JOIN features f USING (matched_set_id, person_id)
)
SELECT 'all_persons_genotype' AS analysis, x.matched_set_id, x.person_id, x.is_target, x.kind, x.exposure, x.gene,
       x.phenotype,
       CASE WHEN g.person_id IS NOT NULL THEN x.exposed  -- genotyped: as in the primary
            WHEN x.kind = 'group' THEN CASE WHEN x.cyp2d6_opioid_with_inhibitor THEN TRUE WHEN NOT x.gap THEN FALSE END
            ELSE FALSE END AS exposed
FROM flags x
LEFT JOIN genotyped g ON g.person_id = x.person_id AND g.gene = x.gene
WHERE x.gene IS NOT NULL
UNION ALL
SELECT 'excluding_imputed_sex', x.matched_set_id, x.person_id, x.is_target, x.kind, x.exposure, x.gene, x.phenotype,
       x.exposed
FROM exposure_flags x
WHERE x.matched_set_id NOT IN (SELECT matched_set_id FROM imputed_sex_sets)
UNION ALL
SELECT 'two_fills', x.matched_set_id, x.person_id, x.is_target, x.kind, x.exposure, x.gene, x.phenotype,
       CASE WHEN x.exposed IS NOT TRUE THEN x.exposed
            WHEN CASE WHEN x.ingredient IS NOT NULL THEN coalesce(e.fills, 0) >= 2
                      WHEN x.exposure = 'cyp2d6_opioid' THEN n.opioid_fills >= 2
                      WHEN x.exposure = 'strong_cyp2d6_inhibitor' THEN n.inhibitor_fills >= 2
                      WHEN x.exposure = 'cyp2d6_opioid_with_inhibitor'
                          THEN n.opioid_fills >= 2 AND n.inhibitor_fills >= 2
                      WHEN x.exposure = 'cyp2d6_opioid_functional_poor'
                          THEN n.opioid_fills >= 2 AND (x.cyp2d6_phenotype = 'Poor Metabolizer'
                                                        OR x.cyp2d6_opioid_with_inhibitor AND n.inhibitor_fills >= 2)
                 END THEN TRUE
            WHEN x.gap THEN NULL
            ELSE FALSE END
FROM flags x
LEFT JOIN exposures e ON e.matched_set_id = x.matched_set_id AND e.person_id = x.person_id
    AND e.ingredient = x.ingredient
LEFT JOIN group_fills n ON n.matched_set_id = x.matched_set_id AND n.person_id = x.person_id

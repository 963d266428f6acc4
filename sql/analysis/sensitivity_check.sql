-- The sensitivity analyses' check: every analysis estimated every exposure of the primary (the all-persons
-- one exactly the genotype-based ones, those with a gene) and nothing else, the primary rows are the
-- association's, and every estimate is well formed: an odds ratio exactly when the note is empty, inside its
-- CI, p and q in [0, 1] with q >= p, no more discordant sets than sets. Inputs: sensitivity, association.
WITH analyses(analysis) AS (
    VALUES ('primary'), ('all_persons_genotype'), ('excluding_imputed_sex'), ('two_fills'), ('other_design')
),
expected AS (
    SELECT a.analysis, x.exposure FROM analyses a, association x
    WHERE a.analysis <> 'all_persons_genotype' OR x.gene IS NOT NULL
)
SELECT
  (SELECT count(*) FROM sensitivity) AS rows_checked,
  coalesce((SELECT list(coalesce(e.analysis, s.analysis) || ': ' || coalesce(e.exposure, s.exposure) ORDER BY 1)
            FROM expected e FULL JOIN sensitivity s ON s.analysis = e.analysis AND s.exposure = e.exposure
            WHERE e.exposure IS NULL OR s.exposure IS NULL), []) AS exposures_missing_or_extra,
  coalesce((SELECT list(x.exposure ORDER BY x.exposure) FROM association x
            JOIN sensitivity s ON s.analysis = 'primary' AND s.exposure = x.exposure
            WHERE s.odds_ratio IS DISTINCT FROM x.odds_ratio OR s.sets <> x.sets OR s.sets_used <> x.sets_used), [])
      AS primary_differing,
  coalesce((SELECT list(analysis || ': ' || exposure ORDER BY 1) FROM sensitivity
            WHERE (odds_ratio IS NULL) <> (note <> '') OR sets_used > sets
               OR odds_ratio IS NOT NULL AND NOT (ci_low <= odds_ratio AND odds_ratio <= ci_high
                                                 AND p_value BETWEEN 0 AND 1 AND q_value BETWEEN p_value - 1e-12 AND 1)),
           []) AS estimates_malformed

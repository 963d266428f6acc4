-- QA 3's figures for one cohort partition: matched sets, targets, controls, and the sets that break the
-- 1 : controls_per_target rule - not exactly one target, too many controls, a recorded shortage that
-- disagrees with the set's controls. Input: c (the partition). Variable: controls_per_target.
WITH sets AS (
    SELECT matched_set_id, count(*) FILTER (WHERE role = 'target') AS t,
           count(*) FILTER (WHERE role = 'control') AS c,
           min(n_controls) AS n_lo, max(n_controls) AS n_hi,
           min(control_shortage) AS s_lo, max(control_shortage) AS s_hi
    FROM c GROUP BY 1
),
k AS (SELECT CAST(getvariable('controls_per_target') AS BIGINT) AS k)
SELECT (SELECT count(*) FROM sets) AS matched_sets,
       (SELECT coalesce(sum(t), 0) FROM sets) AS targets,
       (SELECT coalesce(sum(c), 0) FROM sets) AS controls,
       (SELECT count(*) FROM sets WHERE t <> 1) AS sets_without_exactly_one_target,
       (SELECT count(*) FROM sets, k WHERE c > k) AS sets_with_too_many_controls,
       (SELECT count(*) FROM sets, k WHERE n_lo <> c OR n_hi <> c OR s_lo <> k - c OR s_hi <> k - c)
           AS sets_with_wrong_recorded_shortage,
       (SELECT count(*) FROM sets, k WHERE c < k) AS sets_with_shortage,
       (SELECT coalesce(sum(k - c), 0) FROM sets, k WHERE c < k) AS control_shortage

-- Ids that are one id once whitespace (anywhere, of any kind) and case are normalised, per payer: 'A1',
-- 'A1 ' and 'a1' are kept apart as delivered and reported here (docs/user-guide/pipeline.md, "Ids are
-- compared as delivered").
-- Input: ids (payer_id, id): the distinct ids of one kind (member ids, claim ids).
SELECT payer_id, count(*) AS colliding_keys, sum(n)::BIGINT AS ids
FROM (SELECT payer_id, id_key(id) AS k, count(*) AS n FROM ids GROUP BY ALL HAVING count(*) > 1)
GROUP BY ALL
ORDER BY ALL

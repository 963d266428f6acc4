-- Every washout event of the cohort, all partitions: events whose presence in the look-back window
-- makes a case prevalent (and a control ineligible). Input: events_all. Variable: washout_event_types.
SELECT person_id, event_date
FROM events_all
WHERE list_contains(getvariable('washout_event_types'), event_type)

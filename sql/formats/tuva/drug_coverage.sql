-- raw_drug_coverage: the spans in which a member's pharmacy claims would be seen. This layout does not say
-- when a member had drug coverage, so every span of enrolment counts (the assumption the analysis made
-- before any format said otherwise): no gap, and a member with no fill in the window is unexposed.
-- Input: raw_enrollment.
SELECT payer_id, member_id, enrollment_start AS coverage_start, enrollment_end AS coverage_end FROM raw_enrollment

-- typed_pharmacy: raw pharmacy claims with their columns typed; `claim_date` (the fill date) is
-- what intake/placement.sql places them by, `type_defect` the first column whose value is present but
-- does not parse (`invalid_<column>`: text in a number, NaN or infinity, an unreadable date), which
-- quarantines the row. A claim without a line number is line 1. Input: raw_pharmacy.
WITH parsed AS (
    SELECT *,
           date_value(fill_date) AS fill_date_v, integer_value(claim_line) AS claim_line_v,
           integer_value(claim_version) AS claim_version_v, number_value(quantity) AS quantity_v,
           integer_value(days_supply) AS days_supply_v, number_value(paid_amount) AS paid_amount_v
    FROM raw_pharmacy
)
SELECT id_text(payer_id) AS payer_id, id_text(member_id) AS member_id,
       id_text(claim_id) AS claim_id, coalesce(claim_line_v, 1) AS claim_line,
       claim_version_v AS claim_version,
       fill_date_v AS fill_date,
       CAST(ndc AS VARCHAR) AS ndc,
       quantity_v AS quantity, days_supply_v AS days_supply,
       CAST(patient_sex AS VARCHAR) AS patient_sex, CAST(patient_zip AS VARCHAR) AS patient_zip,
       paid_amount_v AS paid_amount,
       fill_date_v AS claim_date,
       coalesce(defect(fill_date, fill_date_v, 'fill_date'), defect(claim_line, claim_line_v, 'claim_line'),
                defect(claim_version, claim_version_v, 'claim_version'), defect(quantity, quantity_v, 'quantity'),
                defect(days_supply, days_supply_v, 'days_supply'), defect(paid_amount, paid_amount_v, 'paid_amount'))
           AS type_defect
FROM parsed

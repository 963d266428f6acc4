"""Plausibility bounds on magnitudes (README "Bad input"): silver quarantines a quantity, days supply, paid
amount or opioid MME/day out of its bounds as implausible_<what>, the bounds are settings
(settings.plausibility_bounds), and a quarantined fill reaches no MME sum. The corpus rows are in
bad_inputs.csv ("implausible magnitudes"); here are the edges, the order of the reasons and the settings."""

import datetime as dt

import pytest

from pgx_dagster.codesets import register_codesets
from pgx_dagster.duck import DuckDBWorker, Session
from pgx_dagster.settings import SettingError, plausibility_bounds, validate
from pgx_dagster_tests.helpers import table
from pgx_dagster_tests.test_sql_events import FENTANYL_25_PATCH, SUBOXONE_2MG, TEXT, line

OXY_80MG = "00093003301"  # oxycodone 80 mg extended-release tablet, factor 1.5 (sql/codesets/opioid_ndc.csv)
OTHER = "00093021401"  # not an opioid
RX = {"days_supply": "INTEGER", "quantity": "DOUBLE", "paid_amount": "DOUBLE"}


def rx(claim: str, ndc: str = OTHER, qty: float | None = 30.0, days: int | None = 30, paid: float | None = 10.0):
    # one person per claim: no fill is another's duplicate
    return {"payer_id": "A", "member_id": "1", "person_id": f"P_{claim}", "claim_id": claim, "claim_line": 1,
            "claim_version": 1, "fill_date": dt.date(2019, 2, 1), "event_year": 2019, "age_band": "65-74",
            "ndc": ndc, "quantity": qty, "days_supply": days, "patient_sex": "F", "patient_zip": None,
            "paid_amount": paid}  # fmt: skip


def silver_pharmacy(s: Session, rows: list[dict]) -> dict[str, str | None]:
    """claim id -> quarantine reason (None: kept), with the bounds of the current settings."""
    table(s, "staged", rows, schema=RX)
    s.set_variables(plausibility_bounds())
    register_codesets(s)
    n = s.model_table("silver_out", "silver/pharmacy")
    assert n == len(rows)  # rows in = rows out + rows quarantined: no row repeated or lost
    return dict(s.execute("SELECT claim_id, quarantine_reason FROM silver_out").fetchall())


def med(claim: str, paid: float | None) -> dict:
    return {**line(claim, rev="0450", dx1="I10", person="P1"), "claim_version": 1, "claim_type": "I",
            "patient_sex": "F", "patient_zip": None, "paid_amount": paid}  # fmt: skip


def silver_medical(s: Session, rows: list[dict]) -> dict[str, str | None]:
    table(s, "staged", rows, schema={**TEXT, "paid_amount": "DOUBLE"})
    s.set_variables(plausibility_bounds())
    assert s.model_table("silver_out", "silver/medical") == len(rows)
    return dict(s.execute("SELECT claim_id, quarantine_reason FROM silver_out").fetchall())


@pytest.fixture
def s():
    with DuckDBWorker().session() as session:
        yield session


def test_each_magnitude_out_of_its_bounds_is_quarantined_with_its_reason(s):
    got = silver_pharmacy(s, [
        rx("Q_MAX", qty=10_000.0),  # at a bound: kept
        rx("Q_OVER", qty=10_000.5),
        rx("Q_BILLION", qty=1e9),
        rx("Q_NEGATIVE", qty=-0.5),
        rx("Q_ZERO", qty=0.0),  # 0 is 'not recorded' in many extracts: kept, without an MME
        rx("Q_NULL", qty=None),
        rx("D_MAX", days=365),
        rx("D_OVER", days=366),
        rx("D_NEGATIVE", days=-1),
        rx("D_ZERO", days=0),
        rx("P_MAX", paid=10_000_000.0),
        rx("P_REVERSAL", paid=-10_000_000.0),  # a reversal is negative: the bound holds either way
        rx("P_OVER", paid=10_000_000.01),
        rx("P_UNDER", paid=-1e9),
        rx("P_NULL", paid=None),
        rx("M_4800", ndc=OXY_80MG, qty=120.0, days=3),  # 80 mg x 120 / 3 days x 1.5 = 4,800 MME/day
        rx("M_5200", ndc=OXY_80MG, qty=130.0, days=3),  # 5,200
        rx("M_PATCH", ndc=FENTANYL_25_PATCH, qty=9_000.0, days=1),  # a patch: 25 x 7.2 / 3 = 60, whatever the days
        rx("M_NO_FACTOR", ndc=SUBOXONE_2MG, qty=9_000.0, days=1),  # buprenorphine: no factor, no MME/day
        rx("M_NOT_OPIOID", qty=9_000.0, days=1),
        rx("M_NO_DAYS", ndc=OXY_80MG, qty=9_000.0, days=None),  # no MME/day without a days supply
        rx("ORDER_DAYS_FIRST", qty=1e9, days=9_999, paid=1e12),
        rx("ORDER_NDC_FIRST", ndc="ABC", qty=1e9),
    ])  # fmt: skip
    assert got == {
        "Q_MAX": None, "Q_OVER": "implausible_quantity", "Q_BILLION": "implausible_quantity",
        "Q_NEGATIVE": "implausible_quantity", "Q_ZERO": None, "Q_NULL": None,
        "D_MAX": None, "D_OVER": "implausible_days_supply", "D_NEGATIVE": "implausible_days_supply", "D_ZERO": None,
        "P_MAX": None, "P_REVERSAL": None, "P_OVER": "implausible_paid_amount", "P_UNDER": "implausible_paid_amount",
        "P_NULL": None,
        "M_4800": None, "M_5200": "implausible_mme_per_day", "M_PATCH": None, "M_NO_FACTOR": None,
        "M_NOT_OPIOID": None, "M_NO_DAYS": None,
        "ORDER_DAYS_FIRST": "implausible_days_supply", "ORDER_NDC_FIRST": "invalid_ndc",
    }  # fmt: skip


def test_a_medical_line_is_quarantined_by_its_paid_amount_alone(s):
    got = silver_medical(s, [med("MAX", 10_000_000.0), med("REVERSAL", -10_000_000.0), med("NULL", None),
                             med("OVER", 15_000_000.0), med("MINUS_BILLION", -1e9)])  # fmt: skip
    assert got == {"MAX": None, "REVERSAL": None, "NULL": None, "OVER": "implausible_paid_amount",
                   "MINUS_BILLION": "implausible_paid_amount"}  # fmt: skip


@pytest.mark.parametrize(
    ("setting", "value", "row", "reason"),
    [
        ("PGX_MAX_QUANTITY", "100", rx("X", qty=120.0), "implausible_quantity"),
        ("PGX_MAX_DAYS_SUPPLY", "30", rx("X", days=31), "implausible_days_supply"),
        ("PGX_MAX_PAID_AMOUNT", "1000", rx("X", paid=-1500.0), "implausible_paid_amount"),
        ("PGX_MAX_MME_PER_DAY", "50", rx("X", ndc=FENTANYL_25_PATCH, qty=10.0, days=30), "implausible_mme_per_day"),
        ("PGX_MAX_MME_PER_DAY", "90", rx("X", ndc=OXY_80MG, qty=60.0, days=30), "implausible_mme_per_day"),  # 240
    ],
)
def test_each_bound_is_its_setting(s, monkeypatch, setting, value, row, reason):
    assert silver_pharmacy(s, [row]) == {"X": None}  # within the default bound
    monkeypatch.setenv(setting, value)
    assert silver_pharmacy(s, [row]) == {"X": reason}


def test_the_medical_paid_amount_bound_is_its_setting(s, monkeypatch):
    monkeypatch.setenv("PGX_MAX_PAID_AMOUNT", "1000")
    assert silver_medical(s, [med("A", 999.0), med("B", -1000.5)]) == {"A": None, "B": "implausible_paid_amount"}


@pytest.mark.parametrize("bad", ["0", "-5", "lots", "nan"])
def test_a_bound_that_cannot_be_one_is_refused_in_one_line(bad):
    with pytest.raises(SettingError, match=f"PGX_MAX_DAYS_SUPPLY='{bad}' is not valid"):
        validate({"PGX_MAX_DAYS_SUPPLY": bad}, check_paths=False)
    with pytest.raises(SettingError, match="PGX_MAX_MME_PER_DAY"):
        validate({"PGX_MAX_MME_PER_DAY": bad}, check_paths=False)


def test_an_implausible_fill_reaches_no_mme_sum_and_a_zero_one_stays_a_fill_without_mme(s):
    """The probe of issue 34: a fill of 1e9 tablets made one MME/day of 277,777,778. Silver's kept fills are
    the events' opioid fills: the implausible ones are not among them, the zero ones are, with their status."""
    silver_pharmacy(s, [
        rx("OK", ndc=OXY_80MG, qty=60.0, days=30),  # 240 MME/day
        rx("BILLION", ndc=OXY_80MG, qty=1e9, days=30),
        rx("TOO_HIGH", ndc=OXY_80MG, qty=3_000.0, days=30),  # quantity and days supply plausible: 12,000 MME/day
        rx("ZERO_DAYS", ndc=OXY_80MG, qty=60.0, days=0),
        rx("ZERO_QTY", ndc=OXY_80MG, qty=0.0, days=30),
    ])  # fmt: skip
    s.execute(
        "CREATE TEMP VIEW imputed_pharmacy AS SELECT *, 'F' AS sex FROM silver_out WHERE quarantine_reason IS NULL"
    )
    table(s, "imputed_medical", [line("E1", rev="0300", dx1="I10")], schema=TEXT)
    s.model_table("ev", "events/events")
    fills = dict(s.execute("SELECT claim_id, mme_status FROM ev WHERE event_type = 'opioid_fill'").fetchall())
    assert fills == {"OK": "computed", "ZERO_DAYS": "zero_days_supply", "ZERO_QTY": "zero_quantity"}
    assert s.scalar("SELECT sum(mme_per_day) FROM ev") == pytest.approx(240.0)

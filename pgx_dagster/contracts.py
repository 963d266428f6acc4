"""Pandera contracts: the columns, types and value rules of every dataset.

A contract is checked on the written Parquet file, in two parts:
- types: the file's DuckDB column types must equal the contract's (exact names, no extras);
- values: pandera validates collected data (a pandas DataFrame, never a lazy frame, so the data is
  checked and not only the schema), and uniqueness of the key is counted in SQL over the whole file.
  Every rule of a column depends on the value alone, so pandera gets each column's distinct values,
  each weighted by the rows that hold it (quality.value_failures): the same verdict and the same
  failure counts as every row, at the cost of the distinct values. A rule over several columns
  (`FrameRule`) gets the distinct combinations of the columns it names.
Failure metadata reports counts per column and rule, never values: ids are personal data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgx_dagster.forksafe import OnFirstUse

if TYPE_CHECKING:
    import pandas as pd

# The age bands of the claims partitions (partitions.py), defined here, below the partitions, as the contracts
# check them; must agree with the `age_band` macro in sql/common/macros.sql (a test keeps the two in step).
AGE_BANDS: list[str] = ["0-17", "18-34", "35-44", "45-54", "55-64", "65-74", "75+"]


# pandera (with pandas) costs ~0.5 s of every process start - every backfill run - and only contract checks use it.
pa: Any = OnFirstUse("pandera.pandas", globals())
# A column or frame rule, built when a contract is checked (so defining contracts imports nothing).
Rule = Callable[[], Any]


def _rule(name: str, *args: Any, **kwargs: Any) -> Rule:
    """pa.Check.<name>(*args, **kwargs), built on use."""
    return lambda: getattr(pa.Check, name)(*args, **kwargs)


SOURCES = ["observed", "member_consensus", "linked_person", "statistical"]
# A birth year may also be derived from the ages on a person's records (a release without birth dates).
SOURCES_OF = {"birth_year": [*SOURCES, "from_ages"], "sex": SOURCES, "zip3": SOURCES}
# The demographic fields that carry a provenance (`<field>_source`).
DEMOGRAPHIC_FIELDS = ("birth_year", "sex", "zip3")
# The distributions a statistical zip3 may be drawn from (sql/demographics/member_demographics.sql).
ZIP3_BASES = ["state_observed", "state_prefixes", "age_band_observed", "all_observed", "national_prefixes"]
EVENT_TYPES = ["ed_visit", "opioid_poisoning", "opioid_ed_visit", "opioid_use_disorder", "opioid_fill"]


@dataclass(frozen=True)
class Col:
    """A column: its DuckDB type, whether it may be NULL, and its rules - each a function of one value (not of
    the column as a whole: uniqueness is the contract's `key`), as they are validated on distinct values."""

    type: str
    nullable: bool = True
    checks: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class FrameRule:
    """A rule over several columns of a row: `columns`, the ones it reads (and all it may read)."""

    columns: tuple[str, ...]
    rule: Rule


@dataclass(frozen=True)
class Contract:
    name: str
    columns: dict[str, Col]
    key: tuple[str, ...] = ()
    extra_checks: tuple[FrameRule, ...] = field(default=())

    def schema(self) -> Any:
        """The pandera DataFrameSchema of a whole row."""
        return pa.DataFrameSchema(
            self._columns(self.columns),
            checks=[f.rule() for f in self.extra_checks],
            strict=True,
            name=self.name,
        )

    def column_schema(self, columns: list[str]) -> Any:
        """The schema of `columns`, each with its own rules; no rule over several columns."""
        return pa.DataFrameSchema(self._columns(columns), strict=True, name=self.name)

    def frame_schema(self, frame_rule: FrameRule) -> Any:
        """The schema of one rule over several columns: its columns, with no rule of their own."""
        columns = {c: pa.Column(None, nullable=True, required=True) for c in frame_rule.columns}
        return pa.DataFrameSchema(columns, checks=[frame_rule.rule()], strict=True, name=self.name)

    def _columns(self, names: Iterable[str]) -> dict[str, Any]:
        return {
            name: pa.Column(None, checks=[rule() for rule in c.checks], nullable=c.nullable, required=True)
            for name, c in ((n, self.columns[n]) for n in names)
        }


def _matches(pattern: str) -> Rule:
    return _rule("str_matches", f"^(?:{pattern})$", error=f"matches {pattern}")


def _one_of(values: list[str]) -> Rule:
    return _rule("isin", values)


def _partition_checks(age_band: str | None, event_year: int | None) -> dict[str, Col]:
    band_checks = (_rule("equal_to", age_band),) if age_band else (_one_of(AGE_BANDS),)
    year_checks = (_rule("equal_to", event_year),) if event_year else ()
    return {"event_year": Col("BIGINT", False, year_checks), "age_band": Col("VARCHAR", False, band_checks)}


def _each_matches(pattern: str) -> Rule:
    """Every element of a list column matches `pattern` (a NULL list passes)."""
    rx = re.compile(f"(?:{pattern})")

    def ok(value: object) -> bool:
        if value is None or isinstance(value, float):  # NULL list (None, or NaN from pandas)
            return True
        return all(isinstance(x, str) and rx.fullmatch(x) is not None for x in value)

    return lambda: pa.Check(lambda s: s.map(ok).astype(bool), error=f"every element matches {pattern}")


ID = Col("VARCHAR", False)
# The columns every claim line starts with: its member, person and key.
CLAIM_KEY = {"payer_id": ID, "member_id": ID, "person_id": ID, "claim_id": ID}
DX_PATTERN = "[A-Z0-9]{3,7}"
PROCEDURE_PATTERN = "[0-9]{4}[0-9A-Z]|[A-Z][0-9]{4}"
DX = Col("VARCHAR", True, (_matches(DX_PATTERN),))


def _claim_lines(name: str, line: Col, dates: dict[str, Col], part: dict[str, Col], codes: dict[str, Col]) -> Contract:
    """A silver claims dataset: the claim key and line, its dates and partition, its codes, the patient."""
    return Contract(
        name,
        {
            **CLAIM_KEY,
            "claim_line": line,
            "claim_version": Col("INTEGER", True),
            **dates,
            **part,
            **codes,
            "patient_sex": Col("VARCHAR", True, (_one_of(["F", "M"]),)),
            "patient_zip3": Col("VARCHAR", True, (_matches("[0-9]{3}"),)),
            "paid_amount": Col("DOUBLE", True),
        },
        key=("payer_id", "claim_id", "claim_line"),
    )


def silver_medical(age_band: str | None = None, event_year: int | None = None) -> Contract:
    return _claim_lines(
        "silver_medical",
        Col("INTEGER", True),
        {"claim_type": Col("VARCHAR", True), "service_date": Col("DATE", False)},
        _partition_checks(age_band, event_year),
        {
            "revenue_code": Col("VARCHAR", True, (_matches("[0-9]{4}"),)),
            "place_of_service": Col("VARCHAR", True, (_matches("[0-9]{2}"),)),
            "procedure_code": Col("VARCHAR", True, (_matches(PROCEDURE_PATTERN),)),
            "procedure_modifiers": Col("VARCHAR[]", True, (_each_matches("[0-9A-Z]{2}"),)),
            "diagnosis_code_1": DX,
            "diagnosis_code_2": DX,
            "diagnosis_code_3": DX,
            "other_diagnosis_codes": Col("VARCHAR[]", True, (_each_matches(DX_PATTERN),)),
            "diagnosis_code_system": Col("VARCHAR", False, (_one_of(["ICD9CM", "ICD10CM"]),)),
        },
    )


def silver_pharmacy(age_band: str | None = None, event_year: int | None = None) -> Contract:
    return _claim_lines(
        "silver_pharmacy",
        Col("INTEGER", False),
        {"fill_date": Col("DATE", False)},
        _partition_checks(age_band, event_year),
        {
            "ndc": Col("VARCHAR", False, (_matches("[0-9]{11}"),)),
            "quantity": Col("DOUBLE", True, (_rule("ge", 0),)),
            "days_supply": Col("INTEGER", True, (_rule("ge", 0),)),
        },
    )


DEMOGRAPHICS = {
    "birth_year": Col("INTEGER", False, (_rule("in_range", 1880, 2100),)),
    "birth_year_source": Col("VARCHAR", False, (_one_of(SOURCES_OF["birth_year"]),)),
    "sex": Col("VARCHAR", False, (_one_of(["F", "M"]),)),
    "sex_source": Col("VARCHAR", False, (_one_of(SOURCES),)),
    "zip3": Col("VARCHAR", False, (_matches("[0-9]{3}"),)),
    "zip3_source": Col("VARCHAR", False, (_one_of(SOURCES),)),
    # NULL only for a zip3 outside the USPS state ranges.
    "state": Col("VARCHAR", True, (_matches("[A-Z]{2}"),)),
}


def member_demographics() -> Contract:
    return Contract(
        "member_demographics",
        {
            "person_id": ID,
            "payer_id": ID,
            "member_id": ID,
            "event_year": Col("BIGINT", False),
            "age_band": Col("VARCHAR", False, (_one_of(AGE_BANDS),)),
            **{k: v for k, v in DEMOGRAPHICS.items() if k != "state"},
            "zip3_imputed_from": Col("VARCHAR", True, (_one_of(ZIP3_BASES),)),
            "state": DEMOGRAPHICS["state"],
        },
        key=("payer_id", "member_id", "event_year"),
        # A drawn zip3 names its distribution; an observed one has none.
        extra_checks=(
            FrameRule(
                ("zip3_source", "zip3_imputed_from"),
                lambda: pa.Check(
                    lambda df: (df["zip3_source"] == "statistical") == df["zip3_imputed_from"].notna(),
                    error="zip3_imputed_from is set exactly when zip3_source is statistical",
                ),
            ),
        ),
    )


def imputed(kind: str, age_band: str | None = None, event_year: int | None = None) -> Contract:
    base = silver_medical(age_band, event_year) if kind == "medical" else silver_pharmacy(age_band, event_year)
    return Contract(f"imputed_{kind}", {**base.columns, **DEMOGRAPHICS}, key=base.key)


def events(age_band: str | None = None, event_year: int | None = None) -> Contract:
    part = _partition_checks(age_band, event_year)
    return Contract(
        "events",
        {
            "event_id": ID,
            "event_type": Col("VARCHAR", False, (_one_of(EVENT_TYPES),)),
            "person_id": ID,
            "payer_id": ID,
            "member_id": ID,
            "claim_id": ID,
            "event_date": Col("DATE", False),
            "event_end_date": Col("DATE", False),
            "n_claims": Col("BIGINT", False, (_rule("ge", 1),)),
            "age_band": part["age_band"],
            "event_year": part["event_year"],
            "sex": Col("VARCHAR", False, (_one_of(["F", "M"]),)),
            "classifying_codes": Col("VARCHAR", False),
            "codeset_version": Col("VARCHAR", False),
            "ndc": Col("VARCHAR", True, (_matches("[0-9]{11}"),)),
            "ingredient": Col("VARCHAR", True),
            "quantity": Col("DOUBLE", True),
            "days_supply": Col("INTEGER", True),
            "mme_per_day": Col("DOUBLE", True, (_rule("ge", 0),)),
            "mme_status": Col(
                "VARCHAR",
                True,
                (
                    _one_of(
                        [
                            "computed",
                            "missing_days_supply",
                            "zero_days_supply",
                            "missing_quantity",
                            "zero_quantity",
                            "no_conversion_factor",
                        ]  # fmt: skip
                    ),
                ),
            ),
        },
        key=("event_id",),
    )


def cohort(
    name: str,
    age_band: str | None = None,
    event_year: int | None = None,
    controls_per_target: int = 5,
    design: str = "exclusive",
) -> Contract:
    part = _partition_checks(age_band, event_year)
    return Contract(
        f"cohort_{name}",
        {
            "person_id": ID,
            "matched_set_id": ID,
            "role": Col("VARCHAR", False, (_one_of(["target", "control"]),)),
            "index_date": Col("DATE", False),
            "age_band": part["age_band"],
            "event_year": part["event_year"],
            "sex": Col("VARCHAR", False, (_one_of(["F", "M"]),)),
            "n_controls": Col("BIGINT", False, (_rule("in_range", 0, controls_per_target),)),
            "control_shortage": Col("BIGINT", False, (_rule("in_range", 0, controls_per_target),)),
        },
        # exclusive: a person is in one row of the cohort at most; risk set: once per matched set.
        key=("person_id",) if design == "exclusive" else ("matched_set_id", "person_id"),
    )


def failure_counts(
    schema: Any, df: pd.DataFrame, weights: Mapping[str | None, Sequence[int]] | None = None
) -> dict[str, int]:
    """Failed rows per 'column: check' of `schema` on `df` (empty dict when valid); a rule over several
    columns as 'dataframe: check', each failed row once (pandera reports it once per column). `weights`:
    per column (None: the rules over several columns), how many rows each row of `df` stands for; one each
    without."""
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
        counts: dict[str, int] = {}
        frame_rule_rows: dict[str, set[int]] = {}
        for context, column, check, index in zip(
            cases["schema_context"], cases["column"], cases["check"], cases["index"], strict=True
        ):
            of_a_row = index is not None and index == index  # NaN: a failure not of one row
            if context == "DataFrameSchema" and of_a_row:
                frame_rule_rows.setdefault(f"dataframe: {check}", set()).add(int(index))
                continue
            label = f"{column if isinstance(column, str) else 'dataframe'}: {check}"
            n = int(weights[column][int(index)]) if weights is not None and of_a_row else 1
            if n:
                counts[label] = counts.get(label, 0) + n
        for label, rows in frame_rule_rows.items():
            counts[label] = sum(int(weights[None][i]) for i in rows) if weights is not None else len(rows)
        return counts
    return {}


def features(name: str, controls_per_target: int = 5) -> Contract:
    """The merged cohort with its features (sql/analysis/features.sql): one row per member of a set. An exposure
    group is NULL (unknown) when a drug-coverage gap meets the member's window, and the genotype-based one
    (cyp2d6_opioid_functional_poor) also without a CYP2D6 genotype - and then always (complete case)."""
    phenotype = Col("VARCHAR", True)
    exposure = Col("BOOLEAN", True)  # NULL: unknown
    return Contract(
        f"{name}_features",
        {
            "matched_set_id": ID,
            "person_id": ID,
            "role": Col("VARCHAR", False, (_one_of(["target", "control"]),)),
            "is_target": Col("BOOLEAN", False),
            "index_date": Col("DATE", False),
            "age_band": Col("VARCHAR", False, (_one_of(AGE_BANDS),)),
            "event_year": Col("BIGINT", False),
            "sex": Col("VARCHAR", False, (_one_of(["F", "M"]),)),
            "n_controls": Col("BIGINT", False, (_rule("in_range", 0, controls_per_target),)),
            "birth_year": Col("INTEGER", False, (_rule("in_range", 1880, 2100),)),
            "prior_opioid_fills": Col("BIGINT", False, (_rule("ge", 0),)),
            "max_mme_per_day": Col("DOUBLE", False, (_rule("ge", 0),)),
            "prior_oud": Col("BOOLEAN", False),
            "cyp2d6_opioid": exposure,
            "cyp2d6_opioid_days": Col("BIGINT", False, (_rule("ge", 0),)),
            "strong_cyp2d6_inhibitor": exposure,
            "cyp2d6_opioid_with_inhibitor": exposure,
            "cpic_drugs": Col("VARCHAR[]", False),
            "cyp2d6_phenotype": phenotype,
            "cyp2c19_phenotype": phenotype,
            "cyp2c9_phenotype": phenotype,
            "slco1b1_phenotype": phenotype,
            "vkorc1_phenotype": phenotype,
            "cyp2d6_opioid_functional_poor": exposure,
            "drug_coverage_gap_in_window": Col("BOOLEAN", False),
        },
        key=("matched_set_id", "person_id"),
        extra_checks=(
            FrameRule(
                (*EXPOSURE_GROUPS, "cyp2d6_phenotype", "drug_coverage_gap_in_window"),
                lambda: pa.Check(
                    lambda df: (
                        ~df[list(EXPOSURE_GROUPS)].isna().any(axis=1)
                        | df["drug_coverage_gap_in_window"]
                        | (df["cyp2d6_phenotype"].isna() & ~df[list(EXPOSURE_GROUPS[:-1])].isna().any(axis=1))
                    ),
                    error="an exposure group is NULL (unknown) only when a drug-coverage gap meets the window, or "
                    "the genotype-based one without a CYP2D6 genotype",
                ),
            ),
            FrameRule(
                ("cyp2d6_opioid_functional_poor", "cyp2d6_phenotype"),
                lambda: pa.Check(
                    lambda df: df["cyp2d6_phenotype"].notna() | df["cyp2d6_opioid_functional_poor"].isna(),
                    error="cyp2d6_opioid_functional_poor is unknown (NULL) without a CYP2D6 genotype (complete case)",
                ),
            ),
        ),
    )


# The exposure groups of the features (sql/analysis/features.sql), each a column and an exposure; the last
# is the genotype-based one (unknown without a CYP2D6 genotype).
EXPOSURE_GROUPS = (
    "cyp2d6_opioid",
    "strong_cyp2d6_inhibitor",
    "cyp2d6_opioid_with_inhibitor",
    "cyp2d6_opioid_functional_poor",
)


# The columns of a cohort's association table (pgx_dagster/association.py, one row per exposure).
ASSOCIATION_TYPES = {
    "kind": "VARCHAR",
    "gene": "VARCHAR",
    "phenotype": "VARCHAR",
    "exposure": "VARCHAR",
    "sets": "BIGINT",
    "sets_used": "BIGINT",
    "exposed_targets": "BIGINT",
    "exposed_controls": "BIGINT",
    "members_exposure_unknown": "BIGINT",
    "odds_ratio": "DOUBLE",
    "ci_low": "DOUBLE",
    "ci_high": "DOUBLE",
    "p_value": "DOUBLE",
    "mh_odds_ratio": "DOUBLE",
    "mh_ci_low": "DOUBLE",
    "mh_ci_high": "DOUBLE",
    "mh_p_value": "DOUBLE",
    "note": "VARCHAR",
    "controls_per_set": "DOUBLE",
    "exposure_prevalence": "DOUBLE",
    "min_detectable_or": "DOUBLE",
    "q_value": "DOUBLE",
    "power_note": "VARCHAR",
}
# A sensitivity analysis's rows (sensitivity_association): the association's, with the analysis named.
SENSITIVITY_TYPES = {"analysis": "VARCHAR", "analysis_label": "VARCHAR", **ASSOCIATION_TYPES}

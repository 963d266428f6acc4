"""Analysis & exports: the legacy pipeline's fifth stage, from matched sets to a PGx result a researcher
can read. One partition per cohort (cohorts/*.toml); each analysis reads every partition of its cohort.
SQL: sql/analysis/; statistics: pgx_dagster/association.py; the report: pgx_dagster/report.py.

  cohort_attrition     CONSORT-style attrition of the whole cohort
  pgx_exposures        per member of every matched set: fills of drugs with CPIC guidance in the exposure
                       window, the merged cohort with its features, and every exposure flag
  covariate_balance    standardized mean differences between targets and controls (set-weighted)
  matched_association  conditional logistic regression per exposure, Mantel-Haenszel as cross-check
  cohort_export        the merged cohort and features as Parquet and CSV, data dictionary, validation record
  cohort_report        one self-contained HTML report, linked from the materialization
"""

import dataclasses
import functools
import json
import re
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from logging import Logger
from pathlib import Path

from dagster import (
    AllPartitionMapping,
    AssetCheckKey,
    AssetDep,
    AssetsDefinition,
    DagsterInstance,
    MetadataValue,
)

from pgx_dagster import contracts, datasets
from pgx_dagster.association import estimate, with_multiplicity_and_power
from pgx_dagster.codesets import register_codesets, register_pgx_drugs
from pgx_dagster.cohort_definitions import CohortDefinition, load_all, other_design
from pgx_dagster.datasets import (
    DEMOGRAPHICS,
    DRUG_COVERAGE_GAP,
    EVENTS,
    EXPORT_FILES,
    EXPOSURE_FLAGS_FILE,
    FEATURES_FILE,
    IMPUTED,
    TABLE1_FILE,
    cohort_file,
    export_file,
)
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation, quote, sql_text
from pgx_dagster.lake import LakeResource
from pgx_dagster.methods import methods_sections, provenance, synthetic_run
from pgx_dagster.partitions import cohort_names
from pgx_dagster.quality import verdict
from pgx_dagster.raw_inputs import register_genotypes
from pgx_dagster.report import SMD_LIMIT, render
from pgx_dagster.reporting import (
    DATA_DICTIONARY,
    STAGES,
    attrition_markdown,
    files_markdown,
    link_metadata,
    markdown_table,
    table_metadata,
)
from pgx_dagster.stages.common import (
    contract_check,
    partitioned_asset,
    partitioned_check,
    session_threads,
    stage_definitions,
)

DEFINITIONS = {d.name: d for d in load_all()}
EVERY_COHORT = [AssetDep(f"cohort_{name}", partition_mapping=AllPartitionMapping()) for name in cohort_names()]


def cohort_session(duckdb: DuckDBWorker) -> AbstractContextManager[Session]:
    return duckdb.session(threads=session_threads("cohort"))


def analysis(name: str, kind: str) -> datasets.Dataset:
    return datasets.analysis(name, kind)


def analysis_asset(name: str, deps: list, **asset_args: object) -> Callable[[Callable[..., dict]], AssetsDefinition]:
    """`run(log, lake, s, cohort, started) -> metadata` as an analysis asset, one partition per cohort: `s` a
    cohort session (every core) opened for it, `started` when it began (for the duration metadata)."""

    def decorate(run: Callable[..., dict]) -> AssetsDefinition:
        @functools.wraps(run)
        def in_session(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, cohort: str, **extra: object) -> dict:
            started = time.perf_counter()
            with cohort_session(duckdb) as s:
                return run(log, lake, s, cohort, started, **extra)

        return partitioned_asset(name, partitions="cohort", group_name="analysis", deps=deps, **asset_args)(in_session)

    return decorate


def register_cohort(s: Session, lake: LakeResource, d: CohortDefinition) -> None:
    """Views of a whole cohort and what its analyses read: members (every cohort partition), pharmacy
    (every imputed_pharmacy partition), opioid_fills and oud_events, demographics, the drug-coverage gaps,
    genotypes, the drug reference; variables of the cohort's definition."""
    s.view("members", parquet_relation(datasets.cohort(d.name).glob(lake)))
    s.view("pharmacy", parquet_relation(IMPUTED["pharmacy"].glob(lake)))
    s.view("events_all", parquet_relation(EVENTS.glob(lake)))
    s.execute("CREATE OR REPLACE TEMP VIEW opioid_fills AS SELECT * FROM events_all WHERE event_type = 'opioid_fill'")
    s.execute(
        "CREATE OR REPLACE TEMP VIEW oud_events AS SELECT * FROM events_all WHERE event_type = 'opioid_use_disorder'"
    )
    s.view("demographics", parquet_relation(DEMOGRAPHICS.files(lake)))
    s.view("drug_coverage_gap", parquet_relation(DRUG_COVERAGE_GAP.path(lake)))
    register_genotypes(s, lake)
    register_codesets(s, lake.opioid_ndc_file)
    register_pgx_drugs(s, lake.ndc_ingredient_file, lake.opioid_ndc_file)
    s.set_variables(
        {
            "exposure_window_days": d.exposure_window_days,
            "controls_per_target": d.controls_per_target,
            "design": d.design,
            "target_event_types": list(d.target_event_types),
        }
    )


def publish_table(s: Session, lake: LakeResource, name: str, kind: str, started: float, **extra: object) -> dict:
    """Publish the session's table `kind` as analysis(name, kind), with its checkpoint; the asset's metadata."""
    dataset = analysis(name, kind)
    n = s.scalar(f"SELECT count(*) FROM {kind}")
    dataset.publish(s, lake, {dataset.filename: f"SELECT * FROM {kind}"}, metrics={"records": n})
    return table_metadata(s, kind, rows=n, path=dataset.path(lake), started=started, **extra)


def read_analysis(s: Session, lake: LakeResource, name: str, kind: str, filename: str = "") -> str:
    """View `kind` (or `filename`'s stem) of an analysis already written; returns the view's name."""
    view = Path(filename).stem if filename else kind
    s.view(view, parquet_relation(analysis(name, kind).path(lake, filename=filename)))
    return view


def association_rows(s: Session, flags: str, published: dict[str, float] | None = None, by: str = "") -> list[dict]:
    """One estimate per exposure of `flags` (matched_set_id, person_id, is_target, kind, exposure,
    gene, phenotype, exposed), in the order of the exposures; `published`: odds ratios to reproduce, each
    checked with one Newton step from it instead of a fit (association.estimate). `by`: a column of `flags`
    naming separate analyses, estimated apart in the same scan (each row then carries it)."""
    key = f"{by}, exposure" if by else "exposure"
    # sets numbered in SQL and fetched as Arrow: numpy arrays without a Python object per member
    data = s.execute(
        f"WITH numbered AS (SELECT matched_set_id, row_number() OVER (ORDER BY matched_set_id) AS set_no "
        f"FROM (SELECT DISTINCT matched_set_id FROM {flags})) "
        f"SELECT {key}, any_value(kind) AS kind, any_value(gene) AS gene, any_value(phenotype) AS phenotype, "
        # one list of the members, sorted once (three lists each sorted cost a third more)
        f"list({{'set': set_no, 'target': is_target, 'exposed': exposed}} ORDER BY set_no, person_id) AS members "
        f"FROM {flags} JOIN numbered USING (matched_set_id) GROUP BY {key} ORDER BY {key}"
    ).to_arrow_table()
    groups = data.column(by).to_pylist() if by else [None] * data.num_rows
    rows = []
    for i, (group, exposure, kind, gene, phenotype) in enumerate(
        zip(groups, *(data.column(c).to_pylist() for c in ("exposure", "kind", "gene", "phenotype")), strict=True)
    ):
        members = data.column("members")[i].values
        sets, targets, exposed = (members.field(f).to_numpy(zero_copy_only=False) for f in ("set", "target", "exposed"))
        row = estimate(exposure, sets, targets, exposed, (published or {}).get(exposure)).row()
        rows.append({**({by: group} if by else {}), "kind": kind, "gene": gene, "phenotype": phenotype, **row})
    return rows


# ---- attrition ------------------------------------------------------------------------------------------
@analysis_asset("cohort_attrition", deps=EVERY_COHORT)
def cohort_attrition(log: Logger, lake: LakeResource, s: Session, name: str, started: float) -> dict:
    """CONSORT-style attrition of a whole cohort (one partition per cohorts/*.toml): targets from first qualifying
    event to matched sets, controls from the stratum to those used, summed over every age band x event year
    partition of the cohort."""
    s.view("parts", parquet_relation(datasets.cohort(name).glob(lake, cohort_file(name, "attrition"))))
    s.set_variables({"design": DEFINITIONS[name].design})
    s.model_table("attrition", "analysis/attrition")
    steps = MetadataValue.md(attrition_markdown(s.rows("SELECT * FROM attrition")))
    return publish_table(s, lake, name, "attrition", started, attrition=steps)


@partitioned_check(cohort_attrition, name="cohort_attrition_consistent")
def attrition_consistent(s: Session, lake: LakeResource, name: str):
    """The attrition adds up: every step keeps at most the persons of the step before, the matched targets (all, fewer,
    no control) are the incident targets, and the targets match the cohort's rows."""
    read_analysis(s, lake, name, "attrition")
    s.view("members", parquet_relation(datasets.cohort(name).glob(lake)))
    f = s.rows(sql_text("analysis/attrition_check"))[0]
    return verdict(all(v == 0 for v in f.values()), f)


# ---- exposures and features ------------------------------------------------------------------------------
# What the exposures of a cohort's matched sets are derived from (register_cohort).
EXPOSURE_INPUTS = [
    *EVERY_COHORT,
    AssetDep("events", partition_mapping=AllPartitionMapping()),
    AssetDep("imputed_pharmacy", partition_mapping=AllPartitionMapping()),
    AssetDep("member_demographics", partition_mapping=AllPartitionMapping()),  # every shard
    "person_index",  # the drug-coverage gaps
]


@analysis_asset("pgx_exposures", deps=EXPOSURE_INPUTS)
def pgx_exposures(log: Logger, lake: LakeResource, s: Session, name: str, started: float) -> dict:
    """For every member of every matched set: fills of drugs with CPIC gene-drug guidance (and strong CYP2D6
    inhibitors) in the exposure window before the set's index date - days supplied, highest MME/day - and the merged
    cohort with its features (CYP2D6 opioids, inhibitors and their overlap, prior opioid fills, prior OUD,
    phenotypes when genotypes are given) and every exposure flag the association uses. A member without a fill of
    a drug whose window meets a drug-coverage gap (no fill could be seen then) has that exposure unknown (NULL)."""
    d = DEFINITIONS[name]
    dataset = analysis(name, "exposures")
    register_cohort(s, lake, d)
    s.model_table("fills", "analysis/fills")
    exposures = s.model_table("exposures", "analysis/exposures")
    n = s.model_table("features", "analysis/features")
    # members x exposures: computed as it is written, never held (a temp table of it outgrew a worker's memory)
    s.model_view("exposure_flags", "analysis/exposure_flags")
    genotyped = s.scalar("SELECT count(*) FROM features WHERE cyp2d6_phenotype IS NOT NULL")
    with_a_gap = s.scalar("SELECT count(*) FROM features WHERE drug_coverage_gap_in_window")
    dataset.publish(
        s,
        lake,
        {
            dataset.filename: "SELECT * FROM exposures",
            FEATURES_FILE: "SELECT * FROM features",
            EXPOSURE_FLAGS_FILE: "SELECT * FROM exposure_flags",
        },
        metrics={"records": n, "exposures": exposures},
    )
    by_group = dict(s.execute("SELECT exposure_group, count(*) FROM exposures GROUP BY 1 ORDER BY 1").fetchall())
    log.info(f"{STAGES['analysis'].log}: {n:,} cohort rows of {name} with features, {exposures:,} exposures")
    return table_metadata(
        s,
        "features",
        rows=n,
        path=dataset.path(lake, filename=FEATURES_FILE),
        started=started,
        exposure_rows=exposures,
        exposures_by_group=by_group,
        members_with_a_cyp2d6_phenotype=genotyped,
        members_with_a_drug_coverage_gap_in_window=with_a_gap,
        exposure_window_days=d.exposure_window_days,
    )


@partitioned_check(pgx_exposures, name="pgx_exposures_complete")
def exposures_complete(s: Session, lake: LakeResource, name: str):
    """Rows in = persons in the cohort: one feature row per cohort row (matched set and person), none missing or extra,
    no row without its demographics, and every exposure flagged for every member: unknown (NULL) only when a
    drug-coverage gap meets the member's window, and then a drug or group never unexposed."""
    s.view("members", parquet_relation(datasets.cohort(name).glob(lake)))
    read_analysis(s, lake, name, "exposures", FEATURES_FILE)
    read_analysis(s, lake, name, "exposures", EXPOSURE_FLAGS_FILE)
    f = s.rows(sql_text("analysis/exposures_check"))[0]
    passed = f["cohort_rows"] == f["feature_rows"] and all(
        f[k] == 0
        for k in (
            "rows_without_features",
            "rows_not_in_the_cohort",
            "rows_missing_a_feature",
            "exposures_not_for_everyone",
            "flags_unknown_without_a_gap",
            "flags_unexposed_despite_a_gap",
            "flags_known_without_a_genotype",
        )  # fmt: skip
    )
    return verdict(passed, f)


contract_check(
    pgx_exposures,
    lambda lake, name: analysis(name, "exposures").path(lake, filename=FEATURES_FILE),
    lambda name: contracts.features(name, DEFINITIONS[name].controls_per_target),
    detail=" of the merged cohort and its features",
)


# ---- covariate balance -----------------------------------------------------------------------------------
@analysis_asset("covariate_balance", deps=["pgx_exposures"])
def covariate_balance(log: Logger, lake: LakeResource, s: Session, name: str, started: float) -> dict:
    """Standardized mean difference between targets and controls for every covariate - the matching keys, birth year,
    prior opioid fills, highest MME/day, prior OUD and every exposure - with the matched-set weights of ratio
    matching (a control weighs 1 / the controls of its set). Drawn as a love plot in the report. Beside it Table 1
    (table1.parquet): targets vs controls in persons, n (%) / mean (SD), with the same SMDs."""
    read_analysis(s, lake, name, "exposures", FEATURES_FILE)
    read_analysis(s, lake, name, "exposures", EXPOSURE_FLAGS_FILE)
    s.model_table("balance", "analysis/balance")
    s.set_variables({"design": DEFINITIONS[name].design})  # risk_set: Table 1 counts set memberships too
    table1 = s.model_table("table1", "analysis/table1")
    worst = s.rows(
        "SELECT kind, max(abs(smd)) AS max_abs_smd, count(*) FILTER (WHERE abs(smd) > 0.1) AS above_0_1 "
        "FROM balance GROUP BY 1 ORDER BY 1"
    )
    persons = s.rows("SELECT targets_n AS targets, controls_n AS controls FROM table1 WHERE row_order = 1")
    dataset = analysis(name, "balance")
    n = s.scalar("SELECT count(*) FROM balance")
    dataset.publish(s, lake, {dataset.filename: "SELECT * FROM balance", TABLE1_FILE: "SELECT * FROM table1"},
                    metrics={"records": n, "table1_rows": table1})  # fmt: skip
    return table_metadata(s, "balance", rows=n, path=dataset.path(lake), started=started, by_kind=worst,
                          table1_rows=table1, table1_persons=persons[0] if persons else {})  # fmt: skip


@partitioned_check(
    covariate_balance,
    name="covariate_balance_matching_keys",
    description=f"Every matching key (age band, sex, event year) is balanced: |SMD| <= {SMD_LIMIT}. Exact matching "
    "makes it 0; anything else means sets were built wrong. Rows in = persons in the cohort: every covariate is "
    "measured on the cohort's targets and controls (of sets with a control), and Table 1's N is the cohort's persons "
    "of those sets.",
)
def matching_keys_balanced(s: Session, lake: LakeResource, name: str):
    read_analysis(s, lake, name, "balance")
    read_analysis(s, lake, name, "balance", TABLE1_FILE)
    read_analysis(s, lake, name, "exposures", EXPOSURE_FLAGS_FILE)
    s.view("members", parquet_relation(datasets.cohort(name).glob(lake)))
    s.set_variables({"smd_limit": SMD_LIMIT})
    f = s.rows(sql_text("analysis/balance_check"))[0]
    # no matching key measured only when no set has a control: nothing to balance
    measured = f["matching_keys"] > 0 or f["cohort_targets"] == 0
    passed = (f["imbalanced_matching_keys"] == 0 and measured and not f["rows_not_the_cohort"]
              and f["table1_n_is_the_cohort"])  # fmt: skip
    return verdict(passed, f)


# ---- matched association ---------------------------------------------------------------------------------
@analysis_asset("matched_association", deps=["pgx_exposures"])
def matched_association(log: Logger, lake: LakeResource, s: Session, name: str, started: float) -> dict:
    """Conditional logistic regression on the matched sets, per exposure and, when genotypes are given, per drug x
    phenotype (members on the drug with that phenotype against every other member of their sets): odds ratio, 95%
    CI, p and the sets used (statsmodels ConditionalLogit), with the Mantel-Haenszel odds ratio as the cross-check
    (statsmodels StratifiedTable). A member whose exposure is unknown (a drug-coverage gap in the window, no fill seen)
    is left out of that exposure's estimate and counted (members_exposure_unknown)."""
    read_analysis(s, lake, name, "exposures", EXPOSURE_FLAGS_FILE)
    rows = with_multiplicity_and_power(association_rows(s, "exposure_flags"))
    s.register_rows("association", rows, contracts.ASSOCIATION_TYPES)
    estimable = {r["exposure"]: round(r["odds_ratio"], 3) for r in rows if r["odds_ratio"] is not None}
    unknown = {r["exposure"]: r["members_exposure_unknown"] for r in rows if r["members_exposure_unknown"]}
    underpowered = [r["exposure"] for r in rows if r["power_note"] == "underpowered"]
    log.info(f"{STAGES['analysis'].log}: {len(estimable)} of {len(rows)} exposures of {name} estimable")
    return publish_table(s, lake, name, "association", started, estimable=len(estimable), odds_ratios=estimable,
                         members_exposure_unknown=unknown, underpowered=underpowered)  # fmt: skip


@partitioned_check(matched_association, name="matched_association_consistent")
def association_consistent(s: Session, lake: LakeResource, name: str):
    """The estimates fit the exposure flags as written: per exposure the sets, the discordant sets and the exposed
    targets and controls recounted in SQL; an odds ratio exactly when there is no note, inside its 95% CI,
    p in [0, 1]; and every odds ratio reproduced from those flags (within 1e-9: one Newton step with statsmodels'
    score of the conditional likelihood there moves it by less). cohort_export's check does the same from the
    exported CSV."""
    read_analysis(s, lake, name, "association")
    read_analysis(s, lake, name, "exposures", EXPOSURE_FLAGS_FILE)
    f = s.rows(sql_text("analysis/association_check"))[0]
    reproduced = _reproduced_from(s, "exposure_flags")
    passed = not f["counts_differing"] and not f["estimates_malformed"] and reproduced.passed
    return verdict(passed, {**f, **{k: v.value for k, v in reproduced.metadata.items()}})


def _reproduced_from(s: Session, flags: str) -> object:
    """A verdict: the exposure flags `flags` give the odds ratios of the `association` view."""
    written = s.rows("SELECT * FROM association")
    return _reproduced(written, association_rows(s, flags, {r["exposure"]: r["odds_ratio"] for r in written}))


def _reproduced(written: list[dict], again: list[dict]) -> object:
    """A verdict: `again` gives the estimates of `written` (odds ratios within 1e-9)."""
    by_exposure = {r["exposure"]: r for r in again}
    differ = [
        w["exposure"]
        for w in written
        if w["exposure"] not in by_exposure
        or (w["odds_ratio"] is None) != (by_exposure[w["exposure"]]["odds_ratio"] is None)
        or (w["odds_ratio"] is not None and abs(w["odds_ratio"] - by_exposure[w["exposure"]]["odds_ratio"]) > 1e-9)
        or w["sets_used"] != by_exposure[w["exposure"]]["sets_used"]
        or w["members_exposure_unknown"] != by_exposure[w["exposure"]]["members_exposure_unknown"]
    ]
    odd = [w["exposure"] for w in written if w["sets_used"] > w["sets"]]
    return verdict(
        not differ and not odd and len(written) == len(again),
        {"exposures": len(written), "reestimated": len(again), "differing": differ, "sets_used_above_sets": odd},
    )


# ---- sensitivity analyses ------------------------------------------------------------------------------
def analysis_labels(d: CohortDefinition) -> dict[str, str]:
    """Each analysis of sensitivity_association, and how the report names it."""
    return {
        "primary": "primary (genotype-based exposures among the genotyped)",
        "all_persons_genotype": "all persons: not genotyped counted as without the phenotype",
        "excluding_imputed_sex": "excluding sets with a member of statistically imputed sex",
        "two_fills": "use = at least 2 fills in the window",
        "other_design": f"the other design: {other_design(d.design)} sampling",
    }


@analysis_asset("sensitivity_association", deps=[*EXPOSURE_INPUTS, "pgx_exposures", "matched_association"])
def sensitivity_association(log: Logger, lake: LakeResource, s: Session, name: str, started: float) -> dict:
    """The matched association again under each sensitivity analysis, one row per analysis and exposure beside
    the primary (sql/analysis/sensitivity_flags.sql): genotype-based exposures over all persons (ungenotyped
    counted as without the phenotype), excluding the sets with a member of statistically imputed sex, use as
    at least 2 fills in the window, and the other design (exclusive <-> risk_set) on the same cohort definition,
    on the sets the cohort stage matched with it beside each partition (same targets, events and seed)."""
    d = DEFINITIONS[name]
    labels = analysis_labels(d)
    primary = s.rows(f"SELECT * FROM {read_analysis(s, lake, name, 'association')}")
    rows = [{"analysis": "primary", "analysis_label": labels["primary"], **r} for r in primary]
    # On the primary cohort: its features, flags and fills as written by pgx_exposures.
    read_analysis(s, lake, name, "exposures", FEATURES_FILE)
    read_analysis(s, lake, name, "exposures", EXPOSURE_FLAGS_FILE)
    read_analysis(s, lake, name, "exposures")
    s.view("demographics", parquet_relation(DEMOGRAPHICS.files(lake)))
    register_genotypes(s, lake)
    s.model_view("sensitivity_flags", "analysis/sensitivity_flags")
    sets_left_out = s.scalar(
        "SELECT count(DISTINCT matched_set_id) FROM features WHERE matched_set_id NOT IN "
        "(SELECT matched_set_id FROM sensitivity_flags WHERE analysis = 'excluding_imputed_sex')"
    )
    on_primary = association_rows(s, "sensitivity_flags", by="analysis")  # the three in one scan
    for analysis_name in ("all_persons_genotype", "excluding_imputed_sex", "two_fills"):
        rows += [{"analysis_label": labels[analysis_name], **r} for r in with_multiplicity_and_power(
            [r for r in on_primary if r["analysis"] == analysis_name])]  # fmt: skip
    # The other design: its matched sets, then the exposures on them as pgx_exposures derives them.
    for view in ("features", "exposure_flags", "exposures", "demographics", "genotypes"):
        s.execute(f"DROP VIEW IF EXISTS {view}")
    other = dataclasses.replace(d, design=other_design(d.design))
    register_cohort(s, lake, other)
    s.view("members", parquet_relation(datasets.cohort(name).glob(lake, cohort_file(name, "other_design"))))
    other_rows = s.scalar("SELECT count(*) FROM members")
    s.model_table("fills", "analysis/fills")
    s.model_table("features", "analysis/features")
    s.model_view("exposure_flags", "analysis/exposure_flags")
    rows += [{"analysis": "other_design", "analysis_label": labels["other_design"], **r}
             for r in with_multiplicity_and_power(association_rows(s, "exposure_flags"))]  # fmt: skip
    s.register_rows("sensitivity", rows, contracts.SENSITIVITY_TYPES)
    estimated = {a: sum(r["odds_ratio"] is not None for r in rows if r["analysis"] == a) for a in labels}
    log.info(f"{STAGES['analysis'].log}: sensitivity analyses of {name}: {estimated}")
    return publish_table(
        s, lake, name, "sensitivity", started, estimable_per_analysis=estimated,
        sets_with_imputed_sex_left_out=sets_left_out, other_design=other.design,
        other_design_cohort_rows=other_rows,
    )  # fmt: skip


@partitioned_check(sensitivity_association, name="sensitivity_association_consistent")
def sensitivity_consistent(s: Session, lake: LakeResource, name: str):
    """Every sensitivity analysis estimated every exposure of the primary (the all-persons one exactly the
    genotype-based ones), the primary rows are the association's, and every estimate is well formed: an odds ratio
    exactly when there is no note, inside its 95% CI, p and q in [0, 1] with q >= p."""
    read_analysis(s, lake, name, "sensitivity")
    read_analysis(s, lake, name, "association")
    f = s.rows(sql_text("analysis/sensitivity_check"))[0]
    # an empty cohort has no exposure, so no row; otherwise a missing row is in exposures_missing_or_extra
    passed = not any(f[k] for k in ("exposures_missing_or_extra", "primary_differing", "estimates_malformed"))
    return verdict(passed, f)


# ---- exports ---------------------------------------------------------------------------------------------
RATIO_FAULTS = ("sets_without_a_target", "sets_with_several_targets", "sets_over_the_ratio",
                "sets_with_a_wrong_recorded_shortage")  # fmt: skip
EXCLUSIVITY_FAULTS = ("persons_in_several_rows", "persons_twice_in_a_set", "controls_with_a_disqualifying_event")
COMPLETENESS_FAULTS = ("rows_without_features", "rows_missing_demographics")


def validation_record(v: dict) -> dict:
    """sql/analysis/validation.sql's figures with a verdict per part (README "Analysis and exports"). A
    short set is legitimate when its stratum ran out of eligible controls: the cohort stage records and
    audits each one, so ratio accuracy asks that the short sets be exactly those recorded, not that there
    be none."""
    v["ratio"] = f"{v['controls'] / v['targets']:.2f}:1" if v["targets"] else ""
    v["short_set_share"] = round(v["sets_short"] / v["matched_sets"], 4) if v["matched_sets"] else 0.0
    v["ratio_accurate"] = all(v[k] == 0 for k in RATIO_FAULTS) and v["sets_short"] == v["short_sets_recorded"]
    v["exclusive"] = all(v[k] == 0 for k in EXCLUSIVITY_FAULTS)
    v["complete"] = all(v[k] == 0 for k in COMPLETENESS_FAULTS) and v["cohort_rows"] == v["feature_rows"]
    v["passed"] = v["ratio_accurate"] and v["exclusive"] and v["complete"]
    return v


@analysis_asset("cohort_export", deps=["pgx_exposures", "matched_association", "covariate_balance", "cohort_attrition",
                                      "sensitivity_association"])  # fmt: skip
def cohort_export(log: Logger, lake: LakeResource, s: Session, name: str, started: float) -> dict:
    """The merged cohort with its features as Parquet and CSV with a data dictionary, the association, balance,
    Table 1, sensitivity and attrition tables as CSV, and the validation record (ratio accuracy, exclusivity,
    completeness: the legacy pipeline's validation report), in gold/exports/<cohort>/data/."""
    d = DEFINITIONS[name]
    dataset = datasets.export(name)
    s.view("members", parquet_relation(datasets.cohort(name).glob(lake)))
    s.view("events_all", parquet_relation(EVENTS.glob(lake)))
    s.set_variables(
        {"target_event_types": list(d.target_event_types), "controls_per_target": d.controls_per_target,
         "design": d.design}
    )  # fmt: skip
    s.model_view("qualifying", "cohort/qualifying")
    s.view("strata", parquet_relation(datasets.cohort(name).glob(lake, cohort_file(name, "strata"))))
    for kind, filename in (("exposures", FEATURES_FILE), ("association", ""), ("balance", ""),
                           ("attrition", ""), ("balance", TABLE1_FILE), ("sensitivity", "")):  # fmt: skip
        read_analysis(s, lake, name, kind, filename)
    validation = validation_record(s.rows(sql_text("analysis/validation"))[0])
    s.set_variables({"dictionary_file": str(DATA_DICTIONARY)})
    s.model_table("dictionary", "analysis/dictionary")
    tables = {"features": "features", "features_csv": "features", "dictionary": "dictionary",
              "association": "association", "balance": "balance", "attrition": "attrition",
              "table1": "table1 ORDER BY row_order", "sensitivity": "sensitivity"}  # fmt: skip
    dataset.publish(
        s,
        lake,
        {export_file(name, part): f"SELECT * FROM {table}" for part, table in tables.items()},
        metrics={"records": validation["feature_rows"], "validation_passed": validation["passed"]},
        texts={export_file(name, "validation"): json.dumps({"cohort": name, **validation}, indent=2, default=str)},
    )
    log.info(f"{STAGES['analysis'].log}: final outputs of {name} written to {dataset.root(lake)}")
    files = {part: dataset.path(lake, filename=export_file(name, part)) for part in EXPORT_FILES}
    return {
        **table_metadata(
            s,
            "features",
            rows=validation["feature_rows"],
            path=dataset.root(lake),
            started=started,
            validation=validation,
        ),
        # the exported files, each a link where a browser opens it, and the aggregate tables as they were exported
        "files": MetadataValue.md(files_markdown(lake.lake_root, files)),
        "association": MetadataValue.md(
            markdown_table(
                s.rows("SELECT * FROM association ORDER BY coalesce(note, '') <> '', p_value, kind, exposure"),
                ASSOCIATION_COLUMNS,
            )
        ),
        "balance": MetadataValue.md(markdown_table(s.rows("SELECT * FROM balance"), BALANCE_COLUMNS)),
        "attrition": MetadataValue.md(attrition_markdown(s.rows("SELECT * FROM attrition"))),
    }


ASSOCIATION_COLUMNS = ["kind", "exposure", "sets", "sets_used", "odds_ratio", "ci_low", "ci_high", "p_value",
                       "members_exposure_unknown", "note"]  # fmt: skip
BALANCE_COLUMNS = ["kind", "covariate", "mean_targets", "mean_controls", "smd"]


@partitioned_check(cohort_export, name="cohort_export_reproducible")
def export_reproducible(s: Session, lake: LakeResource, name: str):
    """Rows in = persons in the cohort, every column in the data dictionary, the validation record passed, and every
    odds ratio reproduced from the exported CSV alone."""
    dataset = datasets.export(name)
    csv = dataset.path(lake, filename=export_file(name, "features_csv"))
    # typed as the reproduction reads them (an empty CSV would otherwise be all VARCHAR)
    s.view("exported", f"read_csv({quote(csv)}, header = true, types = {EXPORT_TYPES})")
    s.view("members", parquet_relation(datasets.cohort(name).glob(lake)))
    s.view(
        "dictionary", f"read_csv({quote(dataset.path(lake, filename=export_file(name, 'dictionary')))}, header = true)"
    )
    read_analysis(s, lake, name, "association")
    validation = json.loads(lake.read_text(dataset.path(lake, filename=export_file(name, "validation")))
                            or '{"passed": false}')  # fmt: skip
    # The OR of every exposure again, from the exported CSV alone.
    s.model_view("flags_from_export", "analysis/flags_from_export")
    result = _reproduced_from(s, "flags_from_export")
    f = {
        "exported_rows": s.scalar("SELECT count(*) FROM exported"),
        "cohort_rows": s.scalar("SELECT count(*) FROM members"),
        "columns_without_description": [
            c
            for c, _t in s.columns("exported")
            if c not in {r[0] for r in s.execute('SELECT "column" FROM dictionary').fetchall()}
        ],
        "validation_passed": validation["passed"],
        **{k: v.value for k, v in result.metadata.items()},
    }
    passed = (
        result.passed and f["exported_rows"] == f["cohort_rows"] and not f["columns_without_description"]
        and f["validation_passed"]
    )  # fmt: skip
    return verdict(passed, f)


EXPORT_TYPES = (
    "{'matched_set_id': 'VARCHAR', 'person_id': 'VARCHAR', 'cpic_drugs': 'VARCHAR[]', "
    + ", ".join(f"'{c}': 'BOOLEAN'" for c in ("is_target", "cyp2d6_opioid", "strong_cyp2d6_inhibitor",
                                               "cyp2d6_opioid_with_inhibitor", "cyp2d6_opioid_functional_poor",
                                               "drug_coverage_gap_in_window"))
    + ", "
    + ", ".join(f"'{g}_phenotype': 'VARCHAR'" for g in ("cyp2d6", "cyp2c19", "cyp2c9", "slco1b1", "vkorc1"))
    + "}"
)  # fmt: skip


# ---- the report ------------------------------------------------------------------------------------------
def qa_verdicts(instance: DagsterInstance | None, check_keys: Iterable[AssetCheckKey]) -> list[dict] | None:
    """The latest verdict of each of `check_keys` (every check of the run's code location), per partition,
    from the instance."""
    if instance is None:
        return None
    verdicts = []
    for key in sorted(check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        latest: dict[str, object] = {}
        for record in instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(key.asset_key, key.name), limit=10_000
        ):
            # newest first; a check still planned (or never evaluated, its run failed) has no verdict
            if record.status.value in ("SUCCEEDED", "FAILED") and (record.partition or "") not in latest:
                latest[record.partition or ""] = record.status.value == "SUCCEEDED"
        verdicts += [{"asset": key.asset_key.to_user_string(), "check": key.name, "partition": p, "passed": bool(v)}
                     for p, v in latest.items()]  # fmt: skip
    return verdicts


@analysis_asset("cohort_report", with_instance=True, deps=["cohort_export", "sensitivity_association"])
def cohort_report(
    log: Logger,
    lake: LakeResource,
    s: Session,
    name: str,
    started: float,
    instance: DagsterInstance | None = None,
    check_keys: Iterable[AssetCheckKey] = (),
) -> dict:
    """One self-contained HTML report per cohort, readable in a browser with no network (pgx_dagster/report.py):
    key results, methods generated from the cohort's definition and the code, the CONSORT flow diagram, Table 1,
    the balance love plot, the association with its forest plot, q-values and minimum detectable ORs, the
    sensitivity analyses beside the primary, the per-partition QA verdicts and the provenance (methods.py) - with a
    banner and the planted odds ratio when the input is pgx-synth's. The materialization links to it."""
    d = DEFINITIONS[name]
    dataset = datasets.report(name)
    attrition = s.rows(
        f"SELECT * FROM {read_analysis(s, lake, name, 'attrition')} ORDER BY population DESC, step_order"
    )
    table1 = s.rows(f"SELECT * FROM {read_analysis(s, lake, name, 'balance', TABLE1_FILE)} ORDER BY row_order")
    balance = s.rows(f"SELECT * FROM {read_analysis(s, lake, name, 'balance')}")
    association = s.rows(f"SELECT * FROM {read_analysis(s, lake, name, 'association')} ORDER BY kind, exposure")
    sensitivity = s.rows(
        f"SELECT * FROM {read_analysis(s, lake, name, 'sensitivity')} ORDER BY kind, exposure, analysis"
    )
    verdicts = qa_verdicts(instance, check_keys)
    synthetic = synthetic_run(lake)
    targets = next((r["persons"] for r in attrition if r["population"] == "targets" and r["step_order"] == 4), 0)
    page = render(
        title=f"Cohort {name}: matched case-control study",
        lead=f"{d.description} {targets:,} incident targets; matched sets of 1 target : {d.controls_per_target} "
        "controls, exact on age band, calendar year and sex (README \"Cohorts\").",
        design=d.design, attrition=attrition, table1=table1, balance=balance, association=association,
        sensitivity=sensitivity, verdicts=verdicts, methods=methods_sections(d, lake),
        provenance=provenance(d, lake, s), synthetic=synthetic,
    )  # fmt: skip
    dataset.publish(s, lake, {}, metrics={"bytes": len(page.encode())}, texts={dataset.filename: page})
    path = dataset.path(lake)
    log.info(f"{STAGES['analysis'].log}: report of {name}: {path}")
    link = link_metadata(lake.lake_root, path)
    summary = report_summary(name, targets, association, verdicts, files_markdown(lake.lake_root, {"report": path}),
                             synthetic)  # fmt: skip
    return {
        "report": MetadataValue.md(summary),
        **({"report_url": link["url"]} if "url" in link else {}),
        "path": link["path"],
        "bytes": len(page.encode()),
        "qa_verdicts": len(verdicts) if verdicts is not None else "not recorded",
        "qa_failed": sum(not v["passed"] for v in verdicts) if verdicts else 0,
        "duration_s": round(time.perf_counter() - started, 3),
    }


def report_summary(
    name: str, targets: int, association: list[dict], verdicts: list[dict] | None, files: str,
    synthetic: dict | None = None,
) -> str:  # fmt: skip
    """The report's key results as Markdown, shown in the UI where the materialization is: where the report is, the
    targets, every odds ratio with its q-value, the QA verdicts and, for synthetic data, the planted odds ratio.
    Aggregates only: no person appears in it."""
    qa = (
        "not recorded (no Dagster instance)"
        if verdicts is None
        else f"{sum(v['passed'] for v in verdicts):,} of {len(verdicts):,} check verdicts passed"
    )
    estimated = [r for r in association if r["odds_ratio"] is not None]
    estimated.sort(key=lambda r: (r["p_value"] is None, r["p_value"] or 0, r["exposure"]))
    columns = ["kind", "exposure", "odds_ratio", "ci_low", "ci_high", "p_value", "q_value", "min_detectable_or",
               "power_note", "sets_used"]  # fmt: skip
    columns = [c for c in columns if any(c in r for r in association)] or columns
    banner = (
        [f"**Synthetic data** ({synthetic['generator']}, seed {synthetic['seed']}): planted OR "
         f"{float(synthetic['planted_odds_ratio']):.2f} for {synthetic['planted_exposure']} "
         f"(estimated as {synthetic['exposure']})."]
        if synthetic else []
    )  # fmt: skip
    return "\n\n".join(
        [
            f"**Report of cohort {name}** (self-contained HTML: key results, methods, CONSORT flow diagram, Table 1, "
            "balance, association, sensitivity analyses, QA, provenance)",
            *banner,
            files,
            f"{targets:,} incident targets matched. QA: {qa}.",
            "**Conditional (matched) odds ratios**, by p-value",
            markdown_table(estimated, columns) if estimated else "None estimable.",
            f"{len(association) - len(estimated):,} more exposures not estimable (the report and the association "
            "table say why).",
        ]
    )


REPORT_SECTIONS = ("key-results", "methods", "consort", "table1", "balance", "love-plot", "association", "forest-plot",
                   "sensitivity", "sensitivity-forest-plot", "qa", "provenance")  # fmt: skip
REPORT_PLOTS = ("consort-diagram", "love-plot", "forest-plot", "sensitivity-forest-plot")


@partitioned_check(cohort_report, name="cohort_report_complete")
def report_complete(s: Session, lake: LakeResource, name: str):
    """The report holds every section (REPORT_SECTIONS), the CONSORT diagram and the plots as inline SVG, every
    number of the diagram that of the cohort's attrition, the synthetic-data banner exactly when the input is
    pgx-synth's, and loads nothing from the network."""
    page = lake.read_text(datasets.report(name).path(lake)) or ""
    sections = {k: f'id="{k}"' in page for k in REPORT_SECTIONS}
    plots = {k: bool(re.search(rf'id="{k}"[^>]*>\s*<svg', page)) for k in REPORT_PLOTS}
    external = re.findall(r'(?:src|href)="(?:https?:)?//', page)
    attrition = {f"{r['population']}:{r['step_order']}": r["persons"]
                 for r in s.rows(f"SELECT * FROM {read_analysis(s, lake, name, 'attrition')}")}  # fmt: skip
    drawn = {step: int(n) for step, n in re.findall(r'data-step="([^"]+)" data-count="(\d+)"', page)}
    banner = 'id="synthetic-banner"' in page
    f = {
        "sections": sections,
        "inline_plots": plots,
        "external_references": len(external),
        "consort_numbers_differing": sorted(
            k for k in attrition.keys() | drawn.keys() if attrition.get(k) != drawn.get(k)
        ),  # fmt: skip
        "synthetic_banner": banner,
        "bytes": len(page),
    }
    passed = (all(sections.values()) and all(plots.values()) and not external and not f["consort_numbers_differing"]
              and banner == (synthetic_run(lake) is not None))  # fmt: skip
    return verdict(passed, f)


ANALYSIS_ASSETS = [
    cohort_attrition,
    pgx_exposures,
    covariate_balance,
    matched_association,
    sensitivity_association,
    cohort_export,
    cohort_report,
]
defs = stage_definitions(ANALYSIS_ASSETS)

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

import json
import re
import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from logging import Logger
from pathlib import Path

from dagster import AllPartitionMapping, AssetCheckKey, AssetDep, DagsterInstance, Definitions, MetadataValue

from pgx_dagster import contracts, datasets
from pgx_dagster.association import estimate
from pgx_dagster.codesets import register_codesets, register_pgx_drugs, versions
from pgx_dagster.cohort_definitions import CohortDefinition, load_all
from pgx_dagster.datasets import DEMOGRAPHICS, EVENTS, IMPUTED, cohort_file
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation, quote, sql_text
from pgx_dagster.lake import LakeResource, is_s3
from pgx_dagster.partitions import cohort_names
from pgx_dagster.quality import verdict
from pgx_dagster.raw_inputs import register_genotypes
from pgx_dagster.report import SMD_LIMIT, render
from pgx_dagster.reporting import STAGES, attrition_markdown, table_metadata
from pgx_dagster.settings import REPO_ROOT, SQL_DIR
from pgx_dagster.stages.common import contract_check, partitioned_asset, partitioned_check, session_threads

DEFINITIONS = {d.name: d for d in load_all()}
EVERY_COHORT = [AssetDep(f"cohort_{name}", partition_mapping=AllPartitionMapping()) for name in cohort_names()]
DICTIONARY = SQL_DIR / "analysis" / "data_dictionary.csv"


def cohort_session(duckdb: DuckDBWorker) -> AbstractContextManager[Session]:
    return duckdb.session(threads=session_threads("cohort"))


def analysis(name: str, kind: str) -> datasets.Dataset:
    return datasets.analysis(name, kind)


def register_cohort(s: Session, lake: LakeResource, d: CohortDefinition) -> None:
    """Views of a whole cohort and what its analyses read: members (every cohort partition), pharmacy
    (every imputed_pharmacy partition), opioid_fills and oud_events, demographics, genotypes, the drug
    reference; variables of the cohort's definition."""
    s.view("members", parquet_relation(datasets.cohort(d.name).glob(lake)))
    s.view("pharmacy", parquet_relation(IMPUTED["pharmacy"].glob(lake)))
    s.view("events_all", parquet_relation(EVENTS.glob(lake)))
    s.execute("CREATE OR REPLACE TEMP VIEW opioid_fills AS SELECT * FROM events_all WHERE event_type = 'opioid_fill'")
    s.execute(
        "CREATE OR REPLACE TEMP VIEW oud_events AS SELECT * FROM events_all WHERE event_type = 'opioid_use_disorder'"
    )
    s.view("demographics", parquet_relation(DEMOGRAPHICS.path(lake)))
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


def read_analysis(s: Session, lake: LakeResource, name: str, kind: str, filename: str = "") -> str:
    """View `kind` (or `filename`'s stem) of an analysis already written; returns the view's name."""
    view = Path(filename).stem if filename else kind
    s.view(view, parquet_relation(analysis(name, kind).path(lake, filename=filename)))
    return view


def association_rows(s: Session, flags: str, start: dict[str, float] | None = None) -> list[dict]:
    """One estimate per exposure of `flags` (matched_set_id, person_id, is_target, kind, exposure,
    gene, phenotype, exposed), in the order of the exposures; `start`: odds ratios to start the fits at."""
    data = s.execute(
        f"SELECT exposure, any_value(kind) AS kind, any_value(gene) AS gene, any_value(phenotype) AS phenotype, "
        f"list(matched_set_id ORDER BY matched_set_id, person_id) AS sets, "
        f"list(is_target ORDER BY matched_set_id, person_id) AS targets, "
        f"list(exposed ORDER BY matched_set_id, person_id) AS exposed FROM {flags} GROUP BY exposure ORDER BY exposure"
    ).fetchall()
    rows = []
    for exposure, kind, gene, phenotype, sets, targets, exposed in data:
        row = estimate(exposure, sets, targets, exposed, (start or {}).get(exposure)).row()
        rows.append({"kind": kind, "gene": gene, "phenotype": phenotype, **row})
    return rows


# ---- attrition ------------------------------------------------------------------------------------------
@partitioned_asset(
    "cohort_attrition",
    partitions="cohort",
    group_name="analysis",
    deps=EVERY_COHORT,
    description="CONSORT-style attrition of a whole cohort (one partition per cohorts/*.toml): targets from "
    "first qualifying event to matched sets, controls from the stratum to those used, summed over every "
    "age band x event year partition of the cohort.",
)
def cohort_attrition(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, name: str) -> dict:
    started = time.perf_counter()
    dataset = analysis(name, "attrition")
    with cohort_session(duckdb) as s:
        s.view("parts", parquet_relation(datasets.cohort(name).glob(lake, cohort_file(name, "attrition"))))
        s.set_variables({"design": DEFINITIONS[name].design})
        s.model_table("total", "analysis/attrition")
        rows = s.rows("SELECT * FROM total")
        dataset.publish(s, lake, {dataset.filename: "SELECT * FROM total"}, metrics={"records": len(rows)})
        meta = table_metadata(s, "total", rows=len(rows), path=dataset.path(lake), started=started)
    meta["attrition"] = MetadataValue.md(attrition_markdown(rows))
    return meta


@partitioned_check(
    cohort_attrition,
    name="cohort_attrition_consistent",
    description="The attrition adds up: every step keeps at most the persons of the step before, the matched "
    "targets (all, fewer, no control) are the incident targets, and the targets match the cohort's rows.",
)
def attrition_consistent(s: Session, lake: LakeResource, name: str):
    read_analysis(s, lake, name, "attrition")
    s.view("members", parquet_relation(datasets.cohort(name).glob(lake)))
    f = s.rows(sql_text("analysis/attrition_check"))[0]
    return verdict(all(v == 0 for v in f.values()), f)


# ---- exposures and features ------------------------------------------------------------------------------
@partitioned_asset(
    "pgx_exposures",
    partitions="cohort",
    group_name="analysis",
    deps=[
        *EVERY_COHORT,
        AssetDep("events", partition_mapping=AllPartitionMapping()),
        AssetDep("imputed_pharmacy", partition_mapping=AllPartitionMapping()),
        "member_demographics",
    ],
    description="For every member of every matched set: fills of drugs with CPIC gene-drug guidance (and strong "
    "CYP2D6 inhibitors) in the exposure window before the set's index date - days supplied, highest MME/day - "
    "and the merged cohort with its features (CYP2D6 opioids, inhibitors and their overlap, prior opioid fills, "
    "prior OUD, phenotypes when genotypes are given) and every exposure flag the association uses.",
)
def pgx_exposures(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, name: str) -> dict:
    started = time.perf_counter()
    d = DEFINITIONS[name]
    dataset = analysis(name, "exposures")
    with cohort_session(duckdb) as s:
        register_cohort(s, lake, d)
        s.model_table("fills", "analysis/fills")
        exposures = s.model_table("exposures", "analysis/exposures")
        n = s.model_table("features", "analysis/features")
        s.model_table("exposure_flags", "analysis/exposure_flags")
        genotyped = s.scalar("SELECT count(*) FROM features WHERE cyp2d6_phenotype IS NOT NULL")
        dataset.publish(
            s,
            lake,
            {f"{t}.parquet": f"SELECT * FROM {t}" for t in ("features", "exposures", "exposure_flags")},
            metrics={"records": n, "exposures": exposures},
        )
        by_group = dict(s.execute("SELECT exposure_group, count(*) FROM exposures GROUP BY 1 ORDER BY 1").fetchall())
        log.info(f"{STAGES['analysis'].log}: {n:,} cohort rows of {name} with features, {exposures:,} exposures")
        return table_metadata(
            s,
            "features",
            rows=n,
            path=dataset.path(lake, filename="features.parquet"),
            started=started,
            exposure_rows=exposures,
            exposures_by_group=by_group,
            members_with_a_cyp2d6_phenotype=genotyped,
            exposure_window_days=d.exposure_window_days,
        )


@partitioned_check(
    pgx_exposures,
    name="pgx_exposures_complete",
    description="Rows in = persons in the cohort: one feature row per cohort row (matched set and person), none "
    "missing or extra, no row without its demographics, and every exposure flagged for every member.",
)
def exposures_complete(s: Session, lake: LakeResource, name: str):
    s.view("members", parquet_relation(datasets.cohort(name).glob(lake)))
    read_analysis(s, lake, name, "exposures", "features.parquet")
    read_analysis(s, lake, name, "exposures", "exposure_flags.parquet")
    f = s.rows(sql_text("analysis/exposures_check"))[0]
    passed = f["cohort_rows"] == f["feature_rows"] and all(
        f[k] == 0
        for k in (
            "rows_without_features",
            "rows_not_in_the_cohort",
            "rows_missing_a_feature",
            "exposures_not_for_everyone",
        )  # fmt: skip
    )
    return verdict(passed, f)


features_contract = contract_check(
    pgx_exposures,
    lambda lake, name: analysis(name, "exposures").path(lake, filename="features.parquet"),
    lambda name: contracts.features(name, DEFINITIONS[name].controls_per_target),
    detail=" of the merged cohort and its features",
)


# ---- covariate balance -----------------------------------------------------------------------------------
@partitioned_asset(
    "covariate_balance",
    partitions="cohort",
    group_name="analysis",
    deps=["pgx_exposures"],
    description="Standardized mean difference between targets and controls for every covariate - the matching "
    "keys, birth year, prior opioid fills, highest MME/day, prior OUD and every exposure - with the matched-set "
    "weights of ratio matching (a control weighs 1 / the controls of its set). Drawn as a love plot in the report.",
)
def covariate_balance(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, name: str) -> dict:
    started = time.perf_counter()
    dataset = analysis(name, "balance")
    with cohort_session(duckdb) as s:
        read_analysis(s, lake, name, "exposures", "features.parquet")
        read_analysis(s, lake, name, "exposures", "exposure_flags.parquet")
        n = s.model_table("balance", "analysis/balance")
        dataset.publish(s, lake, {dataset.filename: "SELECT * FROM balance"}, metrics={"records": n})
        worst = s.rows(
            "SELECT kind, max(abs(smd)) AS max_abs_smd, count(*) FILTER (WHERE abs(smd) > 0.1) AS above_0_1 "
            "FROM balance GROUP BY 1 ORDER BY 1"
        )
        return table_metadata(s, "balance", rows=n, path=dataset.path(lake), started=started, by_kind=worst)


@partitioned_check(
    covariate_balance,
    name="covariate_balance_matching_keys",
    description=f"Every matching key (age band, sex, event year) is balanced: |SMD| <= {SMD_LIMIT}. Exact matching "
    "makes it 0; anything else means sets were built wrong. Rows in = persons in the cohort: every covariate is "
    "measured on the cohort's targets and controls (of sets with a control).",
)
def matching_keys_balanced(s: Session, lake: LakeResource, name: str):
    read_analysis(s, lake, name, "balance")
    s.view("members", parquet_relation(datasets.cohort(name).glob(lake)))
    s.set_variables({"smd_limit": SMD_LIMIT})
    f = s.rows(sql_text("analysis/balance_check"))[0]
    # no matching key measured only when no set has a control: nothing to balance
    measured = f["matching_keys"] > 0 or f["cohort_targets"] == 0
    passed = f["imbalanced_matching_keys"] == 0 and measured and not f["rows_not_the_cohort"]
    return verdict(passed, f)


# ---- matched association ---------------------------------------------------------------------------------
@partitioned_asset(
    "matched_association",
    partitions="cohort",
    group_name="analysis",
    deps=["pgx_exposures"],
    description="Conditional logistic regression on the matched sets, per exposure and, when genotypes are "
    "given, per drug x phenotype: odds ratio, 95% CI, p and the sets used (statsmodels ConditionalLogit), with "
    "the Mantel-Haenszel odds ratio as the cross-check (statsmodels StratifiedTable).",
)
def matched_association(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, name: str) -> dict:
    started = time.perf_counter()
    dataset = analysis(name, "association")
    with cohort_session(duckdb) as s:
        read_analysis(s, lake, name, "exposures", "exposure_flags.parquet")
        rows = association_rows(s, "exposure_flags")
        s.register_rows("association", rows, contracts.ASSOCIATION_TYPES)
        dataset.publish(s, lake, {dataset.filename: "SELECT * FROM association"}, metrics={"records": len(rows)})
        estimable = [r for r in rows if r["odds_ratio"] is not None]
        log.info(f"{STAGES['analysis'].log}: {len(estimable)} of {len(rows)} exposures of {name} estimable")
        return table_metadata(
            s,
            "association",
            rows=len(rows),
            path=dataset.path(lake),
            started=started,
            estimable=len(estimable),
            odds_ratios={r["exposure"]: round(r["odds_ratio"], 3) for r in estimable},
        )


@partitioned_check(
    matched_association,
    name="matched_association_consistent",
    description="The estimates fit the exposure flags as written: per exposure the sets, the discordant sets and "
    "the exposed targets and controls recounted in SQL; an odds ratio exactly when there is no note, inside its "
    "95% CI, p in [0, 1]. (The OR itself is re-estimated from the exported CSV by cohort_export's check.)",
)
def association_consistent(s: Session, lake: LakeResource, name: str):
    read_analysis(s, lake, name, "association")
    read_analysis(s, lake, name, "exposures", "exposure_flags.parquet")
    f = s.rows(sql_text("analysis/association_check"))[0]
    return verdict(not f["counts_differing"] and not f["estimates_malformed"], f)


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
    ]
    odd = [w["exposure"] for w in written if w["sets_used"] > w["sets"]]
    return verdict(
        not differ and not odd and len(written) == len(again),
        {"exposures": len(written), "reestimated": len(again), "differing": differ, "sets_used_above_sets": odd},
    )


# ---- exports ---------------------------------------------------------------------------------------------
@partitioned_asset(
    "cohort_export",
    partitions="cohort",
    group_name="analysis",
    deps=["pgx_exposures", "matched_association", "covariate_balance", "cohort_attrition"],
    description="The merged cohort with its features as Parquet and CSV with a data dictionary, the association, "
    "balance and attrition tables as CSV, and the validation record (ratio accuracy, exclusivity, completeness: "
    "the legacy pipeline's validation report), in gold/exports/<cohort>/data/.",
)
def cohort_export(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, name: str) -> dict:
    started = time.perf_counter()
    d = DEFINITIONS[name]
    dataset = datasets.export(name)
    with cohort_session(duckdb) as s:
        s.view("members", parquet_relation(datasets.cohort(name).glob(lake)))
        s.view("events_all", parquet_relation(EVENTS.glob(lake)))
        s.set_variables(
            {"target_event_types": list(d.target_event_types), "controls_per_target": d.controls_per_target,
             "design": d.design}
        )  # fmt: skip
        s.model_view("qualifying", "cohort/qualifying")
        for kind, filename in (("exposures", "features.parquet"), ("association", ""), ("balance", ""),
                               ("attrition", "")):  # fmt: skip
            read_analysis(s, lake, name, kind, filename)
        validation = s.rows(sql_text("analysis/validation"))[0]
        validation["passed"] = (
            validation["sets_malformed"] == 0
            and not validation["persons_in_several_rows"]
            and validation["persons_twice_in_a_set"] == 0
            and validation["controls_with_a_disqualifying_event"] == 0
            and validation["rows_without_features"] == 0
            and validation["cohort_rows"] == validation["feature_rows"]
        )
        validation["ratio"] = f"{validation['controls'] / validation['targets']:.2f}:1" if validation["targets"] else ""
        s.set_variables({"dictionary_file": str(DICTIONARY)})
        s.model_table("dictionary", "analysis/dictionary")
        base = f"{name}_cohort_features"
        with lake.publish_dir(dataset.root(lake)) as tmp:
            for query, filename, options in (
                ("SELECT * FROM features", f"{base}.parquet", "FORMAT parquet"),
                ("SELECT * FROM features", f"{base}.csv", "FORMAT csv, HEADER true"),
                ("SELECT * FROM dictionary", "data_dictionary.csv", "FORMAT csv, HEADER true"),
                ("SELECT * FROM association", f"{name}_association.csv", "FORMAT csv, HEADER true"),
                ("SELECT * FROM balance", f"{name}_balance.csv", "FORMAT csv, HEADER true"),
                ("SELECT * FROM attrition", f"{name}_attrition.csv", "FORMAT csv, HEADER true"),
            ):
                s.execute(f"COPY ({query}) TO {quote(f'{tmp}/{filename}')} ({options})")
            Path(tmp, "validation.json").write_text(json.dumps({"cohort": name, **validation}, indent=2, default=str))
        log.info(f"{STAGES['analysis'].log}: final outputs of {name} written to {dataset.root(lake)}")
        return table_metadata(
            s,
            "features",
            rows=validation["feature_rows"],
            path=dataset.root(lake),
            started=started,
            validation=validation,
        )


@partitioned_check(
    cohort_export,
    name="cohort_export_reproducible",
    description="Rows in = persons in the cohort, every column in the data dictionary, the validation record "
    "passed, and every odds ratio reproduced from the exported CSV alone.",
)
def export_reproducible(s: Session, lake: LakeResource, name: str):
    dataset = datasets.export(name)
    base = f"{dataset.root(lake)}/{name}_cohort_features"
    # typed as the reproduction reads them (an empty CSV would otherwise be all VARCHAR)
    s.view("exported", f"read_csv({quote(base + '.csv')}, header = true, types = {EXPORT_TYPES})")
    s.view("members", parquet_relation(datasets.cohort(name).glob(lake)))
    s.view("dictionary", f"read_csv({quote(dataset.root(lake) + '/data_dictionary.csv')}, header = true)")
    read_analysis(s, lake, name, "association")
    validation = json.loads(lake.read_text(f"{dataset.root(lake)}/validation.json") or '{"passed": false}')
    # The OR of every exposure again, from the exported CSV alone.
    s.model_view("flags_from_export", "analysis/flags_from_export")
    written = s.rows("SELECT * FROM association")
    # each fit starts at the published OR: if that is the maximum, Newton stops at once; if not, it moves
    result = _reproduced(
        written, association_rows(s, "flags_from_export", {r["exposure"]: r["odds_ratio"] for r in written})
    )
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
                                               "cyp2d6_opioid_with_inhibitor", "cyp2d6_opioid_functional_poor"))
    + ", "
    + ", ".join(f"'{g}_phenotype': 'VARCHAR'" for g in ("cyp2d6", "cyp2c19", "cyp2c9", "slco1b1", "vkorc1"))
    + "}"
)  # fmt: skip


# ---- the report ------------------------------------------------------------------------------------------
def code_version() -> str:
    """The package version and, in a git checkout, the commit (read from .git, no git needed)."""
    head = REPO_ROOT / ".git" / "HEAD"
    commit = ""
    if head.exists():
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref_file = REPO_ROOT / ".git" / ref[5:]
            packed = REPO_ROOT / ".git" / "packed-refs"
            if ref_file.exists():
                commit = ref_file.read_text().strip()
            elif packed.exists():
                commit = next((line.split()[0] for line in packed.read_text().splitlines()
                               if line.endswith(ref[5:])), "")  # fmt: skip
        else:
            commit = ref
    return f"pgx-dagster {package_version('pgx-dagster')}" + (f", commit {commit[:12]}" if commit else "")


def qa_verdicts(instance: DagsterInstance | None) -> list[dict] | None:
    """The latest verdict of every check of the code location, per partition (from the instance)."""
    if instance is None:
        return None
    from pgx_dagster.definitions import defs

    verdicts = []
    for key in sorted(
        defs.resolve_asset_graph().asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)
    ):
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


@partitioned_asset(
    "cohort_report",
    partitions="cohort",
    group_name="analysis",
    with_instance=True,
    deps=["cohort_export"],
    description="One self-contained HTML report per cohort, readable in a browser with no network: attrition, the "
    "balance love plot, a forest plot of the odds ratios, the per-partition QA verdicts and the run's provenance "
    "(code version, code-set versions, seed, extract date). The materialization links to it.",
)
def cohort_report(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, name: str, instance=None) -> dict:
    started = time.perf_counter()
    d = DEFINITIONS[name]
    dataset = datasets.report(name)
    with cohort_session(duckdb) as s:
        attrition = s.rows(f"SELECT * FROM {read_analysis(s, lake, name, 'attrition')}")
        balance = s.rows(f"SELECT * FROM {read_analysis(s, lake, name, 'balance')}")
        association = s.rows(f"SELECT * FROM {read_analysis(s, lake, name, 'association')} ORDER BY kind, exposure")
        verdicts = qa_verdicts(instance)
        provenance = {
            "cohort definition": f"{d.source.rsplit('/', 2)[-2]}/{d.source.rsplit('/', 1)[-1]}",
            "design": f"{d.design}, 1 : {d.controls_per_target}, look-back {d.lookback_days} days, exposure window "
            f"{d.exposure_window_days} days",
            "seed": d.seed,
            "code version": code_version(),
            "code sets": "; ".join(
                f"{k} {', '.join(v)}" for k, v in versions(lake.opioid_ndc_file, lake.ndc_ingredient_file).items()
            ),  # fmt: skip
            "extract date": str(lake.extract_day()),
            "input format": lake.raw_format,
            "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        }
        targets = next((r["persons"] for r in attrition if r["population"] == "targets" and r["step_order"] == 4), 0)
        page = render(
            title=f"Cohort {name}: matched case-control study",
            lead=f"{d.description} {targets:,} incident targets; matched sets of 1 target : {d.controls_per_target} "
            "controls, exact on age band, calendar year and sex (README \"Cohorts\").",
            attrition=attrition, balance=balance, association=association, verdicts=verdicts, provenance=provenance,
        )  # fmt: skip
        with lake.publish_dir(dataset.root(lake)) as tmp:
            Path(tmp, dataset.filename).write_text(page)
        path = dataset.path(lake)
        log.info(f"{STAGES['analysis'].log}: report of {name}: {path}")
    url = path if is_s3(path) else Path(path).resolve().as_uri()
    return {
        "report": MetadataValue.url(url),
        "path": MetadataValue.path(path),
        "bytes": len(page.encode()),
        "qa_verdicts": len(verdicts) if verdicts is not None else "not recorded",
        "qa_failed": sum(not v["passed"] for v in verdicts) if verdicts else 0,
        "duration_s": round(time.perf_counter() - started, 3),
    }


REPORT_SECTIONS = ("key-results", "attrition", "balance", "love-plot", "association", "forest-plot", "qa", "provenance")


@partitioned_check(
    cohort_report,
    name="cohort_report_complete",
    description="The report holds every section - attrition, the love plot and the forest plot as inline SVG, the "
    "QA verdicts, the provenance - and loads nothing from the network.",
)
def report_complete(s: Session, lake: LakeResource, name: str):
    page = lake.read_text(datasets.report(name).path(lake)) or ""
    sections = {k: f'id="{k}"' in page for k in REPORT_SECTIONS}
    plots = {k: bool(re.search(rf'id="{k}"[^>]*>\s*<svg', page)) for k in ("love-plot", "forest-plot")}
    external = re.findall(r'(?:src|href)="(?:https?:)?//', page)
    f = {"sections": sections, "inline_plots": plots, "external_references": len(external), "bytes": len(page)}
    return verdict(all(sections.values()) and all(plots.values()) and not external, f)


ANALYSIS_ASSETS = [
    cohort_attrition,
    pgx_exposures,
    covariate_balance,
    matched_association,
    cohort_export,
    cohort_report,
]
defs = Definitions(
    assets=ANALYSIS_ASSETS,
    asset_checks=[attrition_consistent, exposures_complete, features_contract, matching_keys_balanced,
                  association_consistent, export_reproducible, report_complete],
)  # fmt: skip

"""Silver: one partition's claims typed, codes normalized (ICD without dots, upper case; revenue
codes 4 digits; place of service 2 digits; CPT without modifiers; NDC 11 digits). Rows that break a
rule go to the quarantine dataset with their reason - implausible magnitudes too, by the bounds of
settings.plausibility_bounds; a malformed code alone goes to the code-level quarantine and its line stays.
SQL: sql/silver/.
"""

import time
from logging import Logger

from dagster import AllPartitionMapping, AssetDep, AssetsDefinition

from pgx_dagster import contracts, guards
from pgx_dagster.codesets import register_codesets
from pgx_dagster.datasets import CODE_QUARANTINE, KINDS, SILVER, SILVER_QUARANTINE, STAGED
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation
from pgx_dagster.guards import CODE_REJECT_RATE, NULL_RATE_JUMP, PAYER_SHIFT, QUARANTINE_RATE
from pgx_dagster.lake import LakeResource
from pgx_dagster.quality import verdict
from pgx_dagster.reporting import STAGES, table_metadata
from pgx_dagster.settings import plausibility_bounds
from pgx_dagster.stages.common import (
    contract_check,
    partitioned_asset,
    partitioned_check,
    payer_figures,
    reason_counts,
    stage_definitions,
)

KIND_TEXT = {"medical": "medical claim lines", "pharmacy": "pharmacy claims"}
# Columns of silver/<kind>.sql that are bookkeeping, not data (the line verdict; medical's rejected codes).
BOOKKEEPING = {"medical": "quarantine_reason, rejected_codes", "pharmacy": "quarantine_reason"}
CONTRACTS = {"medical": contracts.silver_medical, "pharmacy": contracts.silver_pharmacy}


def build_silver(kind: str) -> AssetsDefinition:
    name = f"silver_{kind}"
    silver_ds, quarantine_ds = SILVER[kind], SILVER_QUARANTINE[kind]

    @partitioned_asset(
        name,
        group_name="silver",
        # every shard's rows of the partition
        deps=[AssetDep("claims_intake", partition_mapping=AllPartitionMapping())],
        description=(
            f"Clean, typed {KIND_TEXT[kind]} of one age_band x event_year partition, codes normalized, "
            f"latest adjudication version only. Rejected rows: {quarantine_ds.folder}/ with a reason"
            + (f"; rejected codes alone: {CODE_QUARANTINE.folder}/." if kind == "medical" else ".")
        ),
    )
    def silver(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int) -> dict:
        started = time.perf_counter()
        with duckdb.session() as s:
            s.view("staged", parquet_relation(STAGED[kind].files(lake, band, year)))
            s.set_variables(plausibility_bounds())
            if kind == "pharmacy":  # an opioid fill's MME/day is bounded
                register_codesets(s, lake.opioid_ndc_file)
            n_in = s.model_table("silver_out", f"silver/{kind}")
            reasons = reason_counts(s, "silver_out")
            n_out = n_in - sum(reasons.values())
            data = f"* EXCLUDE ({BOOKKEEPING[kind]})"
            good = f"SELECT {data} FROM silver_out WHERE quarantine_reason IS NULL"
            quarantine_ds.publish(
                s,
                lake,
                {
                    quarantine_ds.filename: f"SELECT {data}, quarantine_reason FROM silver_out "
                    "WHERE quarantine_reason IS NOT NULL"
                },  # fmt: skip
                band,
                year,
            )
            code_rejects: dict[str, int] = {}
            if kind == "medical":
                s.model_table("code_rejects", "silver/code_rejects")
                CODE_QUARANTINE.publish(s, lake, {CODE_QUARANTINE.filename: "SELECT * FROM code_rejects"}, band, year)
                code_rejects = dict(
                    s.execute("SELECT reason, count(*) FROM code_rejects GROUP BY 1 ORDER BY 1").fetchall()
                )
            silver_ds.publish(
                s,
                lake,
                {silver_ds.filename: good},
                band,
                year,
                metrics={
                    "records": n_out,
                    "rows_in": n_in,
                    "quarantined": reasons,
                    "codes_rejected": code_rejects,
                    "null_rates": null_rates(s, good, guards.REQUIRED[kind]),
                    # the baseline of the next materialization's payer_shift
                    "by_payer": payer_figures(s, kind, "staged", "silver_out"),
                },  # fmt: skip
            )
            log.info(
                f"{STAGES['silver'].log}: {n_out:,} {kind} records loaded for {band}|{year} "
                f"({n_in - n_out:,} quarantined {reasons})"
            )
            s.execute(f"CREATE TEMP VIEW silver_good AS {good}")
            figures = {"rows_in": n_in, "rows_quarantined": n_in - n_out, "quarantine_reasons": reasons}
            if kind == "medical":
                figures["codes_rejected"] = code_rejects
            path = silver_ds.path(lake, band, year)
            return table_metadata(s, "silver_good", rows=n_out, path=path, started=started, **figures)

    @partitioned_check(silver, name=f"{name}_reconciles")
    def reconciles(s: Session, lake: LakeResource, band: str, year: int):
        """Rows in (staged by intake) = rows out + rows quarantined for this partition."""
        rows_in = s.count_parquet(STAGED[kind].files(lake, band, year))
        rows_out = s.count_parquet(silver_ds.path(lake, band, year))
        quarantined = s.count_parquet(quarantine_ds.path(lake, band, year))
        return verdict(
            rows_in == rows_out + quarantined,
            {
                "rows_in": rows_in,
                "rows_out": rows_out,
                "rows_quarantined": quarantined,
                "unaccounted": rows_in - rows_out - quarantined,
            },
        )

    @partitioned_check(
        silver,
        name=f"{name}_quarantine_rate",
        description=QUARANTINE_RATE.describe("per reason in this partition"),
    )
    def quarantine_rate(s: Session, lake: LakeResource, band: str, year: int):
        rows_in = s.count_parquet(STAGED[kind].files(lake, band, year))
        reasons = reason_counts(s, parquet_relation(quarantine_ds.path(lake, band, year)))
        by_payer = payer_figures(s, kind, *written(lake, band, year), codes=False)
        payers = {kind: {p: (f["rows"], f["quarantined"]) for p, f in by_payer.items()}}
        passed, meta = guards.quarantine_rate({kind: (rows_in, reasons)}, whole_tables=False, payers=payers)
        return verdict(passed, meta, warn_only=QUARANTINE_RATE.warn_only)

    def written(lake: LakeResource, band: str, year: int) -> tuple[str, str]:
        """The partition's staged rows and its quarantine, as relations."""
        staged = parquet_relation(STAGED[kind].files(lake, band, year))
        return staged, parquet_relation(quarantine_ds.path(lake, band, year))

    def by_payer(s: Session, lake: LakeResource, band: str, year: int) -> guards.PayerFigures:
        """The partition's figures per payer as the asset wrote them in its checkpoint (tallying a partition's
        codes three times - asset and two checks - doubled silver's time), or counted again for a lake written
        before the checkpoint kept them."""
        kept = (silver_ds.checkpoint(lake, band, year).get("metrics") or {}).get("by_payer")
        return kept if kept is not None else payer_figures(s, kind, *written(lake, band, year))

    @partitioned_check(
        silver,
        name=f"{name}_payer_shift",
        description=PAYER_SHIFT.describe(
            "each payer of this partition, per defect reason" + (" and code family" if kind == "medical" else "")
        ),
    )
    def payer_shift(s: Session, lake: LakeResource, band: str, year: int):
        previous = silver_ds.checkpoint(lake, band, year).get("previous")
        passed, meta = guards.payer_shift(by_payer(s, lake, band, year), previous)
        return verdict(passed, meta, warn_only=PAYER_SHIFT.warn_only)

    if kind == "medical":

        @partitioned_check(
            silver,
            name=f"{name}_code_reject_rate",
            description=CODE_REJECT_RATE.describe("per code family, for the partition and for each payer"),
        )
        def code_reject_rate(s: Session, lake: LakeResource, band: str, year: int):
            passed, meta = guards.code_reject_rate(guards.code_tallies(kind, by_payer(s, lake, band, year)))
            return verdict(passed, meta, warn_only=CODE_REJECT_RATE.warn_only)

    @partitioned_check(
        silver,
        name=f"{name}_null_rates",
        description=NULL_RATE_JUMP.describe(
            f"monitored: {', '.join(guards.MONITORED[kind])}; required: {', '.join(guards.REQUIRED[kind])}"
        ),
    )
    def null_rate_jump(s: Session, lake: LakeResource, band: str, year: int):
        path = silver_ds.path(lake, band, year)
        rates = null_rates(s, f"SELECT * FROM {parquet_relation(path)}", guards.MONITORED[kind])
        previous = silver_ds.checkpoint(lake, band, year).get("previous")
        passed, meta = guards.null_rate_jump(s.count_parquet(path), rates, previous, guards.REQUIRED[kind])
        return verdict(passed, meta, warn_only=NULL_RATE_JUMP.warn_only)

    contract_check(
        silver, silver_ds.path, CONTRACTS[kind], detail=", every row in this partition's age band and event year"
    )
    return silver


def null_rates(s: Session, query: str, columns: tuple[str, ...]) -> dict[str, float]:
    """Share of NULLs per column among the rows of `query` (0 for no rows)."""
    tallies = ", ".join(f'avg(CASE WHEN "{c}" IS NULL THEN 1.0 ELSE 0.0 END)' for c in columns)
    values = s.execute(f"SELECT {tallies} FROM ({query})").fetchone()
    return {c: round(v or 0.0, 6) for c, v in zip(columns, values, strict=True)}


SILVER_ASSETS = {kind: build_silver(kind) for kind in KINDS}
defs = stage_definitions(list(SILVER_ASSETS.values()))

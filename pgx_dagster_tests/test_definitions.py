"""The full code location loads, and every asset carries what users expect to see in the UI."""

from dagster import AssetKey

from pgx_dagster.definitions import defs
from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.partitions import AGE_BANDS, all_keys, claims_partitions

PARTITIONED = ["silver_medical", "silver_pharmacy", "imputed_medical", "imputed_pharmacy", "events", "cohort_opioid_ed"]


def test_definitions_load_and_validate():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {
        "raw_medical_claims",
        "raw_pharmacy_claims",
        "raw_member_eligibility",
        "raw_member_linkage",
        "claims_intake",
        "member_demographics",
        *PARTITIONED,
    } <= keys
    defs.resolve_implicit_global_asset_job_def()


def test_35_partitions_keyed_age_band_then_year():
    keys = all_keys()
    assert len(keys) == 35
    assert "65-74|2019" in keys and "75+|2016" in keys
    assert claims_partitions.get_partition_keys()[0].keys_by_dimension == {"age_band": "0-17", "event_year": "2016"}


def test_every_asset_has_description_owner_kind():
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        assert spec.description and len(spec.description) > 40, name
        assert spec.owners, name
        assert spec.kinds, name


def test_every_partitioned_asset_has_partitioned_blocking_checks_including_a_contract():
    graph = defs.resolve_asset_graph()
    for name in PARTITIONED:
        node = graph.get(AssetKey(name))
        assert node.partitions_def == claims_partitions, name
        check_keys = [c for c in graph.asset_check_keys if c.asset_key == AssetKey(name)]
        names = {c.name for c in check_keys}
        assert f"{name}_contract" in names, (name, names)
        for ck in check_keys:
            check_node = graph.get(ck)
            assert check_node.blocking, ck
            assert check_node.partitions_def == claims_partitions, ck


def test_qa_standards_are_all_checks():
    names = {c.name for c in defs.resolve_asset_graph().asset_check_keys}
    for expected in [
        "imputed_medical_demographics_coverage",  # QA 1
        "cohort_opioid_ed_no_overlap",  # QA 2
        "cohort_opioid_ed_ratio",  # QA 3
        "events_classification",  # QA 4
        "imputed_pharmacy_imputation_completeness",  # QA 5
    ]:
        assert expected in names


def test_cohort_waits_for_every_events_partition():
    graph = defs.resolve_asset_graph()
    cohort = graph.get(AssetKey("cohort_opioid_ed"))
    mapping = cohort.assets_def.get_partition_mapping(AssetKey("events"))
    assert type(mapping).__name__ == "AllPartitionMapping"


def test_sql_age_band_macro_matches_partitions():
    with DuckDBWorker().session() as s:
        bands = [r[0] for r in s.execute("SELECT DISTINCT age_band(a) FROM range(0, 120) t(a) ORDER BY a").fetchall()]
        assert s.scalar("SELECT age_band(-1)") is None
    assert bands == AGE_BANDS

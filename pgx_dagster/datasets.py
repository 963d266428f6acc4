"""Every dataset of the lake: the one module that knows the layout.

A dataset has a folder under PGX_LAKE_ROOT (a local folder or s3://bucket/prefix), the file(s) in it,
whether it is split into age_band x event_year partition folders, and the stage vocabulary of its
checkpoint. Stages ask this module for paths and publish through it; no stage writes a path.

Layout (kept from the legacy pipeline so existing consumers keep working):
  staging/{medical,pharmacy}/shard=NNN/age_band=../event_year=../*.parquet   intake's placed rows, per shard
  staging/person_index/person_index.parquet                             member -> person, birth year
  quarantine/intake_{medical,pharmacy}/shard=NNN/quarantine.parquet      rows intake could not place, per shard
  quarantine/intake_eligibility/quarantine.parquet                      eligibility rows / values not used
  silver/observation_period/observation_period.parquet                  enrolment per person
  silver/{medical,pharmacy}/age_band=../event_year=../{kind}.parquet
  quarantine/silver_{medical,pharmacy}/age_band=../event_year=../quarantine.parquet
  quarantine/silver_medical_codes/age_band=../event_year=../quarantine.parquet   codes rejected alone
  staging/person_facts/shard=NNN/person_facts.parquet                  what imputation needs of each person
  staging/person_facts/shard=NNN/units/{split}/unit=N/*.parquet        the shard's demographics inputs, split by person
  staging/person_facts/shard=NNN/units/units.json                      how many units they were split into
  silver/member_demographics/shard=NNN/member_demographics.parquet
  silver/imputed/{medical,pharmacy}_partitioned/age_band=../event_year=../{kind}.parquet
  gold/events/age_band=../event_year=../events.parquet
  gold/cohorts/{cohort}/age_band=../event_year=../{cohort}_{cohort,strata,attrition,excluded}.parquet
  gold/analysis/{cohort}/{analysis}/...                                 the analysis stage
  gold/exports/{cohort}/data/...                                        merged export, dictionary, validation
  gold/exports/{cohort}/report/{cohort}_report.html                     the report
Partition folders use Hive naming with DuckDB's escaping ('75+' is written 'age_band=75%2B'), so
`read_parquet(..., hive_partitioning = true)` reads the values back exactly. A folder is published
whole: written elsewhere, then swapped in (LakeResource.publish_dir), with `_checkpoint.json` inside.
A dataset written per shard (`by_shard`) has a folder per shard, each published whole by its shard's
step: shards never share a folder. Readers read the configured shards' files (`files`), never a glob over
shard folders, so a shard left over from another PGX_SHARDS is never read.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote as urlquote

from pgx_dagster.duck import Session, quote
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import all_keys, shard_count, shard_key, split_key
from pgx_dagster.reporting import PROFILE, read_checkpoint, write_checkpoint

KINDS = ("medical", "pharmacy")


def hive_segment(name: str, value: str | int) -> str:
    return f"{name}={urlquote(str(value), safe='-_.')}"


def partition_suffix(age_band: str, event_year: int) -> str:
    return f"{hive_segment('age_band', age_band)}/{hive_segment('event_year', event_year)}"


@dataclass(frozen=True)
class Dataset:
    """A dataset: `folder` under the lake root, its data file `filename` (in each partition folder when
    `partitioned`), and the checkpoint vocabulary of the stage that writes it (reporting.STAGES). `by_shard`:
    written per shard, each shard in its own folder (`shard`)."""

    folder: str
    filename: str
    partitioned: bool = True
    stage: str = ""
    by_shard: bool = False

    def shard(self, shard: int) -> Dataset:
        """One shard's part of a `by_shard` dataset: a dataset of its own, in folder shard=NNN."""
        if not self.by_shard:
            raise ValueError(f"{self.folder} is not written per shard")
        return replace(self, folder=f"{self.folder}/{hive_segment('shard', shard_key(shard))}", by_shard=False)

    def files(self, lake: LakeResource, age_band: str | None = None, event_year: int | None = None) -> list[str]:
        """The data file(s) of the partition (or of the dataset, when not partitioned): one per configured
        shard when `by_shard`."""
        if self.by_shard:
            return [self.shard(n).path(lake, age_band, event_year) for n in range(shard_count())]
        return [self.path(lake, age_band, event_year)]

    def all_files(self, lake: LakeResource) -> list[str]:
        """The data file of every partition (of every configured shard, when `by_shard`), as globs."""
        if self.by_shard:
            return [self.shard(n).glob(lake) for n in range(shard_count())]
        return [self.glob(lake)]

    def root(self, lake: LakeResource) -> str:
        """The dataset's folder (of every partition, when partitioned; of every shard, when by shard)."""
        return f"{lake.lake_root.rstrip('/')}/{self.folder}"

    def dir(self, lake: LakeResource, age_band: str | None = None, event_year: int | None = None) -> str:
        if self.by_shard:
            raise ValueError(f"{self.folder} is written per shard: name the shard (Dataset.shard) or read files()")
        root = self.root(lake)
        if not self.partitioned:
            return root
        if age_band is None or event_year is None:
            raise ValueError(f"{self.folder} is partitioned: name the age band and event year")
        return f"{root}/{partition_suffix(age_band, event_year)}"

    def path(
        self, lake: LakeResource, age_band: str | None = None, event_year: int | None = None, filename: str = ""
    ) -> str:
        """A file of the dataset (its data file unless `filename` names another one)."""
        return f"{self.dir(lake, age_band, event_year)}/{filename or self.filename}"

    def glob(self, lake: LakeResource, filename: str = "") -> str:
        """The file in every partition folder (named patterns, so hidden staging folders never match)."""
        if self.by_shard:
            raise ValueError(f"{self.folder} is written per shard: read all_files()")
        name = filename or self.filename
        return f"{self.root(lake)}/age_band=*/event_year=*/{name}" if self.partitioned else f"{self.root(lake)}/{name}"

    def publish(
        self,
        s: Session,
        lake: LakeResource,
        files: dict[str, str],
        age_band: str | None = None,
        event_year: int | None = None,
        metrics: dict | None = None,
        texts: dict[str, str] | None = None,
        folders: dict[str, str] | None = None,
    ) -> str:
        """Write each `filename: SELECT ...` into the dataset's folder (the partition's, when partitioned),
        as Parquet, or CSV with a header when the name ends in .csv, each of `texts` (`filename:
        content`, e.g. a JSON record or an HTML page) as it is, and move each of `folders` (`name: a local
        folder`) in whole, replacing the folder whole; with `metrics`, the stage's checkpoint beside them.
        Returns the folder."""
        final_dir = self.dir(lake, age_band, event_year)
        replaced = read_checkpoint(lake, final_dir) if metrics is not None else None
        with lake.publish_dir(final_dir) as tmp:
            for filename, query in files.items():
                s.execute(f"COPY ({query}) TO {quote(f'{tmp}/{filename}')} ({copy_format(filename)})")
            for filename, text in (texts or {}).items():
                Path(tmp, filename).parent.mkdir(parents=True, exist_ok=True)
                Path(tmp, filename).write_text(text)
            for name, folder in (folders or {}).items():
                Path(tmp, name).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(folder, Path(tmp, name))
            if metrics is not None:
                write_checkpoint(tmp, self.stage, _entity(self, age_band, event_year), metrics, replaced)
            if s.profiles is not None:  # PGX_PROFILE=1: the step's queries so far, beside the checkpoint
                Path(tmp, PROFILE).write_text(json.dumps(s.profiles, indent=1))
        if s.profiles is not None:
            s.profile_path = f"{final_dir}/{PROFILE}"
        return final_dir

    def checkpoint(self, lake: LakeResource, age_band: str | None = None, event_year: int | None = None) -> dict:
        """The partition's (or dataset's) checkpoint as written; {} when there is none."""
        return read_checkpoint(lake, self.dir(lake, age_band, event_year)) or {}

    def publish_partitioned(self, s: Session, lake: LakeResource, query: str) -> str:
        """Write `query` (with age_band and event_year columns) into every partition folder at once,
        replacing the whole dataset; every partition gets a file, empty if need be, so each downstream
        step has an input."""
        root = self.root(lake)
        with lake.publish_dir(root) as tmp:
            s.execute(
                f"COPY ({query}) TO {quote(tmp)} (FORMAT parquet, PARTITION_BY (age_band, event_year), "
                "WRITE_PARTITION_COLUMNS true)"
            )
            for key in all_keys():
                folder = f"{tmp}/{partition_suffix(*split_key(key))}"
                os.makedirs(folder, exist_ok=True)
                s.execute(f"COPY ({query} LIMIT 0) TO {quote(folder + '/empty.parquet')} (FORMAT parquet)")
        return root


COPY_FORMATS = {".parquet": "FORMAT parquet", ".csv": "FORMAT csv, HEADER true"}


def copy_format(filename: str) -> str:
    """DuckDB's COPY options for a file of a dataset, by its extension (a typo must not write Parquet
    under another name)."""
    try:
        return COPY_FORMATS[Path(filename).suffix]
    except KeyError:
        raise ValueError(f"{filename}: a dataset's query is written as {' or '.join(COPY_FORMATS)}") from None


def _entity(d: Dataset, age_band: str | None, event_year: int | None) -> str:
    """The checkpoint's entity id, e.g. EVENTS_65-74_2019 (the legacy pipeline's form)."""
    name = d.folder.rstrip("/").rsplit("/", 1)[-1].upper()
    return f"{name}_{age_band}_{event_year}" if d.partitioned else name


# ---- the datasets -------------------------------------------------------------------------------------
STAGED = {kind: Dataset(f"staging/{kind}", "*.parquet", stage="intake", by_shard=True) for kind in KINDS}
PERSON_INDEX = Dataset("staging/person_index", "person_index.parquet", partitioned=False, stage="intake")
OBSERVATION_PERIOD = Dataset(
    "silver/observation_period", "observation_period.parquet", partitioned=False, stage="intake"
)
# The days of each person's observation periods without drug coverage (sql/intake/drug_coverage_gap.sql).
DRUG_COVERAGE_GAP = Dataset("silver/drug_coverage_gap", "drug_coverage_gap.parquet", partitioned=False, stage="intake")
INTAKE_QUARANTINE = {
    kind: Dataset(f"quarantine/intake_{kind}", "quarantine.parquet", partitioned=False, stage="intake", by_shard=True)
    for kind in KINDS
}
# Eligibility rows intake could not use, and values it rejected on rows it kept (sql/intake/eligibility.sql).
ELIGIBILITY_QUARANTINE = Dataset(
    "quarantine/intake_eligibility", "quarantine.parquet", partitioned=False, stage="intake"
)
SILVER = {kind: Dataset(f"silver/{kind}", f"{kind}.parquet", stage="silver") for kind in KINDS}
SILVER_QUARANTINE = {kind: Dataset(f"quarantine/silver_{kind}", "quarantine.parquet", stage="silver") for kind in KINDS}
CODE_QUARANTINE = Dataset("quarantine/silver_medical_codes", "quarantine.parquet", stage="silver")
DEMOGRAPHICS = Dataset(
    "silver/member_demographics", "member_demographics.parquet", partitioned=False, stage="demographics", by_shard=True
)
# What the statistical imputation needs of each person, per shard (demographics' person_facts).
PERSON_FACTS = Dataset(
    "staging/person_facts", "person_facts.parquet", partitioned=False, stage="demographics", by_shard=True
)
# Beside a shard's person facts: the shard's demographics inputs as person_facts split them by person, one folder
# per split, then one per unit (`{folder}/{split}/unit=N/*.parquet`), and the unit count (`{folder}/units.json`),
# read again by member_demographics.
PERSON_FACTS_SPLITS = "units"
IMPUTED = {kind: Dataset(f"silver/imputed/{kind}_partitioned", f"{kind}.parquet", stage="imputed") for kind in KINDS}
EVENTS = Dataset("gold/events", "events.parquet", stage="events")


def cohort(name: str) -> Dataset:
    """A cohort's matched sets; each partition folder also holds `<name>_strata.parquet`,
    `<name>_attrition.parquet`, `<name>_excluded.parquet` - the excluded targets with their reasons - and
    `<name>_other_design.parquet`, the sets of the other design for the sensitivity analysis (cohort_file)."""
    return Dataset(f"gold/cohorts/{name}", f"{name}_cohort.parquet", stage="cohorts")


def cohort_file(name: str, part: str) -> str:
    """The file name of a cohort partition's `part`: cohort | strata | attrition | excluded | other_design."""
    return f"{name}_{part}.parquet"


def analysis(name: str, kind: str) -> Dataset:
    """One analysis of a cohort, e.g. analysis('opioid_ed', 'attrition')."""
    return Dataset(f"gold/analysis/{name}/{kind}", f"{kind}.parquet", partitioned=False, stage="analysis")


# Beside exposures.parquet in analysis(<cohort>, 'exposures'): the merged cohort and every exposure flag.
FEATURES_FILE = "features.parquet"
EXPOSURE_FLAGS_FILE = "exposure_flags.parquet"
TABLE1_FILE = "table1.parquet"  # Table 1 of a cohort, beside balance.parquet in analysis(name, "balance")

# The files of a cohort's export, by part ({cohort}: the cohort's name); `export_file` names them.
EXPORT_FILES = {
    "features": "{cohort}_cohort_features.parquet",
    "features_csv": "{cohort}_cohort_features.csv",
    "dictionary": "data_dictionary.csv",
    "association": "{cohort}_association.csv",
    "balance": "{cohort}_balance.csv",
    "attrition": "{cohort}_attrition.csv",
    "table1": "{cohort}_table1.csv",
    "sensitivity": "{cohort}_sensitivity.csv",
    "validation": "validation.json",
}


def export(name: str) -> Dataset:
    """A cohort's merged export: the cohort with its features as Parquet and CSV, the data dictionary, the
    association, balance, Table 1, sensitivity and attrition tables, and the validation record (EXPORT_FILES)."""
    return Dataset(f"gold/exports/{name}/data", export_file(name, "features"), partitioned=False, stage="analysis")


def export_file(name: str, part: str) -> str:
    """The file name of `part` (a key of EXPORT_FILES) of cohort `name`'s export."""
    return EXPORT_FILES[part].format(cohort=name)


def report(name: str) -> Dataset:
    """A cohort's report: one self-contained HTML file."""
    return Dataset(f"gold/exports/{name}/report", f"{name}_report.html", partitioned=False, stage="analysis")


# The partitioned datasets whose content must be identical whoever computes them (benchmarks/).
def compared(cohort_names: list[str]) -> list[Dataset]:
    return [*SILVER.values(), *IMPUTED.values(), EVENTS, *(cohort(n) for n in cohort_names)]

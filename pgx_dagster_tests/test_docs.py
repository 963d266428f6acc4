"""The documentation: the MkDocs site builds strictly (no broken link or anchor, no page left out of the nav), the
generated pages equal what the code gives, and the README keeps the commands CI and the hooks rely on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pgx_dagster import docgen

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        cwd=config.parent,
    )


@pytest.fixture(scope="module")
def mkdocs_available() -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is a dev extra: pip install -e '.[dev]'")


def test_the_site_builds_strictly(mkdocs_available, tmp_path):
    built = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stdout}\n{built.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "search" / "search_index.json").is_file(), "the site has no search index"


def copy_of_the_docs(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    return tmp_path / "mkdocs.yml"


def test_a_broken_link_fails_the_build(mkdocs_available, tmp_path):
    config = copy_of_the_docs(tmp_path)
    page = tmp_path / "docs" / "index.md"
    page.write_text(page.read_text() + "\n[gone](no-such-page.md)\n")
    built = mkdocs_build(config, tmp_path / "site")
    assert built.returncode != 0 and "no-such-page.md" in built.stdout + built.stderr


def test_a_page_missing_from_the_nav_fails_the_build(mkdocs_available, tmp_path):
    config = copy_of_the_docs(tmp_path)
    (tmp_path / "docs" / "orphan.md").write_text("# Not in the nav\n")
    built = mkdocs_build(config, tmp_path / "site")
    assert built.returncode != 0 and "orphan.md" in built.stdout + built.stderr


@pytest.mark.parametrize("page", sorted(docgen.PAGES), ids=str)
def test_generated_pages_match_the_code(page):
    committed = (docgen.DOCS / page).read_text() if (docgen.DOCS / page).is_file() else ""
    assert committed == docgen.PAGES[page](), (
        f"docs/{page} differs from what the code gives: run `{docgen.COMMAND}` and commit the result"
    )


def test_the_configuration_page_is_generated_from_the_settings_object():
    from pgx_dagster.settings import TOOLING, Settings, env_name

    committed = (docgen.DOCS / docgen.CONFIGURATION_PAGE).read_text()
    assert committed == docgen.configuration_page(), f"run `{docgen.COMMAND}` and commit docs/configuration.md"
    rows = [line for line in committed.splitlines() if line.startswith("| `PGX_")]
    assert [row.split("`")[1] for row in rows] == [env_name(f) for f in Settings.model_fields] + list(TOOLING)
    assert "| `PGX_SHARDS` | `shards` | `1` | a whole number from 1 to 999 | shards | definitions load |" in committed
    assert "(docs/configuration.md)" in README.read_text()


def test_the_catalogue_lists_every_asset_and_check():
    from pgx_dagster.definitions import defs

    page = docgen.assets_page(defs)
    for spec in defs.resolve_all_asset_specs():
        assert f"\n## {spec.key.to_user_string()}\n" in page
    checks = [s for d in [*defs.assets, *(defs.asset_checks or [])] for s in getattr(d, "check_specs", [])]
    assert checks
    for check in checks:
        assert f"| `{check.name}` |" in page


def test_the_lake_layout_lists_every_declared_dataset():
    from pgx_dagster import datasets

    page = docgen.lake_page()
    for name, value in vars(datasets).items():
        if isinstance(value, datasets.Dataset):
            assert f"| `{name}` | `{docgen.dataset_path(value)}` |" in page
    assert "`gold/cohorts/<cohort>/age_band=…/event_year=…/<cohort>_cohort.parquet`" in page


def test_docgen_check_names_the_command(tmp_path, capsys):
    assert docgen.main(["--docs", str(tmp_path)]) == 0
    assert docgen.main(["--check", "--docs", str(tmp_path)]) == 0
    (tmp_path / docgen.ASSETS_PAGE).write_text("stale\n")
    assert docgen.main(["--check", "--docs", str(tmp_path)]) == 1
    assert docgen.COMMAND in capsys.readouterr().out


def test_readme_is_short_and_keeps_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    assert "make demo" in text and "make test" in text
    assert "dagster dev" in text
    assert "the seed" not in text.lower()
    assert not re.search(r"\bissue \d+|#\d{2,}\b", text), "user-facing text names no issue numbers"


def test_readme_links_exist():
    text = README.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_docs_name_no_issue_numbers():
    for page in (ROOT / "docs").rglob("*.md"):
        text = page.read_text()
        assert not re.search(r"\bissue \d+\b", text, re.IGNORECASE), f"{page} names an issue number"


def test_the_count_of_private_dagster_names_is_the_code_s():
    from pgx_dagster.ops.dagster_private import PRIVATE

    count = len(set(PRIVATE.values()))
    for page in ("docs/design-decisions.md", "docs/operations/upgrading-dagster.md"):
        claimed = re.findall(r"\b(\d+)\s+(?:private\s+Dagster\s+)?names\b", (ROOT / page).read_text())
        assert claimed, f"{page} states no count of private names"
        assert all(int(c) == count for c in claimed), f"{page} says {claimed}, dagster_private.py resolves {count}"


def test_the_apcd_page_lists_the_element_map_as_shipped():
    """docs/user-guide/apcd.md's table of the elements read is sql/formats/apcd/elements.csv, row for row: the
    page cannot drift from what the reader reads (regenerate the table from the CSV when the map changes)."""
    import csv

    from pgx_dagster.apcd_release import ELEMENTS_FILE

    header = "| file | role | elements | required | meaning |"
    lines = (ROOT / "docs" / "user-guide" / "apcd.md").read_text().splitlines()
    assert lines.count(header) == 1, f"docs/user-guide/apcd.md has no single table headed {header}"
    start = lines.index(header) + 2  # after the header and its separator
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        file, role, elements, required, meaning = (cell.strip() for cell in line.strip().strip("|").split(" | "))
        rows.append({"file": file, "role": role.strip("`"), "elements": re.findall(r"`([^`]+)`", elements),
                     "required": required, "meaning": meaning})  # fmt: skip
    with open(ELEMENTS_FILE, newline="") as f:
        shipped = [{"file": r["file"], "role": r["role"], "elements": r["elements"].split(), "required": r["required"],
                    "meaning": r["meaning"]} for r in csv.DictReader(f)]  # fmt: skip
    assert rows == shipped, "docs/user-guide/apcd.md's element table differs from sql/formats/apcd/elements.csv"


def test_the_readme_apcd_table_names_only_elements_the_reader_reads():
    """The README's short table of APCD elements: every element it names is in sql/formats/apcd/elements.csv,
    and every required one is named."""
    import csv

    from pgx_dagster.apcd_release import ELEMENTS_FILE

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Running on your APCD release") :]
    table = section[section.index("| Table | Elements | Meaning |") :].split("\n\n")[0]
    named = set(re.findall(r"`((?:MC|PC|ME|PE)\d{3}[A-Z]?)`", table))
    with open(ELEMENTS_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    shipped = {e for r in rows for e in r["elements"].split()}
    assert named and named <= shipped, f"README names elements the reader does not read: {named - shipped}"
    required = {r["elements"].split()[0] for r in rows if r["required"] == "yes"}
    assert required <= named, f"README's APCD table leaves out required elements: {required - named}"

"""What a person sees of the catalogue in the UI, in headless Chromium on the real webserver and daemon: every
column with its description from the data dictionary, the report and the exports as Markdown with links a
browser opens (PGX_LAKE_URL: here a static file server over the lake), and `make dev` on the port asked for.
One webserver for the module."""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import duckdb
import pytest

from pgx_dagster.datasets import DEMOGRAPHICS, EVENTS, export
from pgx_dagster.datasets import report as report_of
from pgx_dagster.reporting import column_descriptions
from pgx_dagster.stages.analysis import ASSOCIATION_COLUMNS
from pgx_dagster_tests.helpers import glob_of, path_of
from pgx_dagster_tests.services import ARTIFACTS, REPO, browse, dagster_services, free_port, write_instance_settings

COHORT = "opioid_ed"


@pytest.fixture(scope="module")
def catalog_ui(pipeline, tmp_path_factory):
    """A copy of the materialized lake, served as files on loopback (PGX_LAKE_URL) and by the webserver and
    daemon; the cohort's export and report materialized again so that their links use the URL."""
    from pgx_dagster.ops.services import spawn, stop, wait_for_url

    base = tmp_path_factory.mktemp("catalog_ui")
    lake, home = base / "lake", base / "dagster_home"
    shutil.copytree(pipeline.lake, lake)
    shutil.copytree(pipeline.home, home)
    write_instance_settings(home)
    logs = ARTIFACTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    files = spawn(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(lake)],
        stdout=(logs / "lake-http.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        lake_url = f"http://127.0.0.1:{port}"
        wait_for_url(f"{lake_url}/", 60, files, logs / "lake-http.log")
        env = {"PGX_RAW_ROOT": str(pipeline.raw), "PGX_LAKE_ROOT": str(lake), "PGX_LAKE_URL": lake_url}
        with dagster_services(home, env, logs) as url:
            again = subprocess.run(
                [str(Path(sys.executable).parent / "pgx"), "backfill", "--url", url, "--partitions", COHORT,
                 "--assets", "cohort_export,cohort_report"],
                capture_output=True, text=True, timeout=600, cwd=REPO,
            )  # fmt: skip
            assert again.returncode == 0, again.stdout + again.stderr
            yield {"url": url, "lake": lake, "lake_url": lake_url}
    finally:
        stop(files)


def first_file(lake: Path, dataset) -> Path:
    return Path(sorted(glob.glob(glob_of(lake, dataset)))[0])


def lake_link(catalog_ui, dataset, filename: str = "") -> str:
    """The URL the lake's static server gives a file of an unpartitioned dataset (paths from datasets.py)."""
    relative = path_of(catalog_ui["lake"], dataset, filename=filename).relative_to(catalog_ui["lake"])
    return f"{catalog_ui['lake_url']}/{relative.as_posix()}"


def parquet_columns(path: Path) -> list[str]:
    return [r[0] for r in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{path}', hive_partitioning = false)")
            .fetchall()]  # fmt: skip


@pytest.mark.parametrize(
    "asset, written",
    [
        ("events", EVENTS),
        ("member_demographics", DEMOGRAPHICS.shard(0)),
        ("cohort_export", export(COHORT)),
    ],
)
def test_the_catalogue_shows_every_column_with_its_description(catalog_ui, asset, written):
    """The asset's page lists each column it wrote with the data dictionary's description."""
    columns = parquet_columns(first_file(catalog_ui["lake"], written))
    described = column_descriptions()
    page, close = browse(f"{catalog_ui['url']}/assets/{asset}")
    try:
        page.get_by_text("Column name").first.wait_for(timeout=60_000)
        page.get_by_text(described[columns[-1]]).first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / f"catalog_columns_{asset}.png"), full_page=True)
        rows = page.locator("tr").all_inner_texts()
    finally:
        close()
    shown = {}
    for row in rows:  # "name \t type \t description"
        cells = [c.strip() for c in row.split("\t")]
        if len(cells) >= 3 and cells[0] in columns:
            shown[cells[0]] = cells[2]
    assert shown == {c: described[c] for c in columns}, set(columns) ^ set(shown)


def open_markdown(page, key: str) -> str:
    """Click the metadata row `key`'s "[Show Markdown]" and return the rendered dialog's HTML."""
    page.locator("tr", has=page.locator("td", has_text=key)).get_by_text("[Show Markdown]").first.click()
    dialog = page.locator("[role=dialog]").last
    dialog.wait_for(timeout=30_000)
    return dialog.inner_html()


def test_the_report_summary_renders_as_markdown_with_a_link_the_browser_opens(catalog_ui):
    report = lake_link(catalog_ui, report_of(COHORT))
    page, close = browse(f"{catalog_ui['url']}/assets/cohort_report?partition={COHORT}")
    try:
        page.get_by_text("report_url").first.wait_for(timeout=60_000)
        assert page.locator(f'a[href="{report}"]').count() >= 1  # the report_url row: a link, not file://
        html = open_markdown(page, "report")
        page.screenshot(path=str(ARTIFACTS / "cohort_report_summary.png"))
        # the rendered Markdown: a heading line, the report's link, and the odds ratios as an HTML table
        assert f'href="{report}"' in html and "<table" in html and "Conditional (matched) odds ratios" in html
        assert all(f">{c}<" in html for c in ("kind", "exposure", "odds_ratio", "ci_low", "ci_high"))
        assert "file://" not in html
        page.goto(report)  # what clicking the link opens
        page.get_by_text(f"Cohort {COHORT}: matched case-control study").first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "cohort_report_opened_from_ui.png"))
    finally:
        close()


def test_the_exports_are_listed_with_links_and_their_tables_render(catalog_ui):
    from pgx_dagster.datasets import EXPORT_FILES, export_file

    page, close = browse(f"{catalog_ui['url']}/assets/cohort_export?partition={COHORT}")
    try:
        page.get_by_text("Column name").first.wait_for(timeout=60_000)
        files = open_markdown(page, "files")
        page.screenshot(path=str(ARTIFACTS / "cohort_export_files.png"))
        page.keyboard.press("Escape")
        association = open_markdown(page, "association")
        page.screenshot(path=str(ARTIFACTS / "cohort_export_association.png"))
    finally:
        close()
    folder = path_of(catalog_ui["lake"], export(COHORT)).parent
    for part in EXPORT_FILES:
        name = export_file(COHORT, part)
        url = lake_link(catalog_ui, export(COHORT), name)
        assert f'href="{url}"' in files, name
        with urllib.request.urlopen(url, timeout=10) as response:  # the link serves the exported file itself
            assert response.read() == (folder / name).read_bytes(), name
    assert "<table" in association and all(f">{c}<" in association for c in ASSOCIATION_COLUMNS)


def test_the_backfill_page_shows_the_partitions_given(catalog_ui):
    """`pgx backfill --partitions` (no --assets) selects the assets that have those partitions, so the backfill
    page's "Partition selection" reads the keys given - not shard "000", the first asset of the whole graph (and
    the launch no longer fails: Dagster applies the keys to the first asset). Last in the module: it cancels the
    backfill it started, which may leave a partition half done."""
    from pgx_dagster.ops.backfill import Client

    keys = ["65-74|2019", "45-54|2018"]
    client = Client(catalog_ui["url"])
    launched = subprocess.run(
        [str(Path(sys.executable).parent / "pgx"), "backfill", "--url", catalog_ui["url"], "--partitions",
         ",".join(keys), "--no-wait"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stdout + launched.stderr
    backfill_id = launched.stdout.split("Backfill ", 1)[1].split(":", 1)[0]
    try:
        # what it targets, printed: the keys for every asset that has them, every cohort partition after them
        assert "2 of 35 age_band|event_year partitions x 5 assets" in launched.stdout, launched.stdout
        assert "all 35 age_band|event_year partitions x 1 asset" in launched.stdout, launched.stdout
        page, close = browse(f"{catalog_ui['url']}/runs/b/{backfill_id}")
        try:
            page.get_by_text("Partition selection").first.wait_for(timeout=60_000)
            page.get_by_text(keys[0]).first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "backfill_partition_selection.png"))
            text = page.inner_text("body")
        finally:
            close()
        header = text.split("Partition selection", 1)[1].split("Status", 1)[0]
        assert sorted(header.split()) == sorted(keys), header
    finally:
        if not client.status(backfill_id).finished:
            client.cancel(backfill_id)
        client.wait(backfill_id, timeout=300)


def test_make_dev_listens_on_the_port_asked_and_says_when_it_is_taken(tmp_path):
    """`make dev PORT=...`: the port reaches the webserver, and a port in use stops it before anything starts,
    with one line naming the port and a free one."""
    dry = subprocess.run(["make", "-n", "-o", "install", "-o", "instance", "dev", "PORT=3001"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert dry.returncode == 0 and "dagster-webserver -w workspace.yaml -h 127.0.0.1 -p 3001" in dry.stdout
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        busy = subprocess.run(
            ["make", "-o", "install", "-o", "instance", "dev", f"PORT={port}", f"DAGSTER_HOME={tmp_path}"],
            capture_output=True, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
    assert busy.returncode != 0
    message = [line for line in busy.stderr.splitlines() if line.startswith("make dev:")]
    assert len(message) == 1 and f"cannot listen on 127.0.0.1:{port} (Address already in use)" in message[0]
    assert "make dev PORT=" in message[0] and "pgx daemon" not in busy.stdout  # nothing started

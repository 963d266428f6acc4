"""What the tests start besides Dagster's services (pgx_dagster/ops/services.py): Debian packages and moto's
S3 server on loopback, stopped by process id."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from pgx_dagster.lake import s3_client
from pgx_dagster.ops.services import BIN, dagster_services, free_port, spawn, stop, wait_for_url
from pgx_dagster.settings import REPO_ROOT as REPO

__all__ = ["ARTIFACTS", "REPO", "apt_install", "dagster_services", "free_port", "moto_s3", "render"]

# Screenshots, DOM dumps and service logs of the tests, kept for a person (and CI) to look at.
ARTIFACTS = REPO / "test-artifacts"


def apt_install(package: str) -> None:
    """Install a Debian package the tests need (CI runs as root on a fresh machine)."""
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, timeout=900, env=env)


@contextmanager
def adopted(env: dict[str, str]) -> Iterator[None]:
    """This process's environment (boto3, DuckDB) set to `env` until the end, then restored."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    s3_client.cache_clear()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        s3_client.cache_clear()


@contextmanager
def moto_s3(logs: Path, adopt: bool = False):
    """moto's server on loopback (S3, and every other AWS API it mocks: ECS, EC2); yields the AWS
    environment that points at it - with `adopt`, this process's environment too, until the end."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "moto.log"
    proc = spawn(
        [str(BIN / "python"), "-m", "pgx_dagster_tests.moto_server", "-H", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_url(f"{url}/moto-api/", 60, proc, log)
        env = {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }
        with adopted(env) if adopt else nullcontext():
            yield env
    finally:
        stop(proc)


# Chromium on a closed network, as root: without the background-networking flags it keeps trying to reach the
# internet. Also the launch arguments of Playwright's Chromium, for tests that click (headless is its own option).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        # Debian's chromium; CI runs as root on a fresh machine.
        apt_install("chromium")
    return path


def render(url: str, screenshot: Path, profile: Path, window: str = "1600,1200", offline: bool = False) -> str:
    """Screenshot `url` in headless Chromium and return its DOM after scripts ran. `offline`: every
    request other than the page itself goes to a closed port (what a page needs from the network fails)."""
    flags = [
        "--headless",
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={window}",
        "--virtual-time-budget=20000",
        *(["--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>"] if offline else []),
    ]
    subprocess.run([chromium(), *flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=180)
    dom = subprocess.run([chromium(), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    return dom.stdout


def browse(url: str, viewport: tuple[int, int] = (1600, 1400)):
    """`(page, close)`: `url` in headless Chromium (Debian's chromium, driven by Playwright, for tests that click)."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    p = sync_playwright().start()
    browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.goto(url)

    def close() -> None:
        browser.close()
        p.stop()

    return page, close


def write_instance_settings(home: Path) -> None:
    """The repository's dagster.yaml in `home`, without Dagster's first-visit newsletter dialog, which a fresh
    browser profile gets over every page a moment after it loads (it takes the clicks)."""
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text() + "\nnux:\n  enabled: false\n")

"""Start and stop the real Dagster webserver and daemon on loopback, by process id."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def apt_install(package: str) -> None:
    """Install a Debian package the tests need (CI runs as root on a fresh machine)."""
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, timeout=900, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (the daemon and webserver have children), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def wait_for_url(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not up after {timeout} s:\n{log.read_text()[-3000:]}")


@contextmanager
def dagster_services(home: Path, env: dict[str, str], logs: Path):
    """Yield the webserver URL with `dagster-webserver` and `dagster-daemon` running on loopback."""
    port = free_port()
    env = {**os.environ, **env, "DAGSTER_HOME": str(home)}
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []

    def start(name: str, args: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(
            [str(BIN / name), *args, "-w", "workspace.yaml"],
            cwd=REPO,
            env=env,
            stdout=(logs / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    try:
        web = start("dagster-webserver", ["-h", "127.0.0.1", "-p", str(port)])
        start("dagster-daemon", ["run"])
        url = f"http://127.0.0.1:{port}"
        wait_for_url(f"{url}/server_info", 120, web, logs / "dagster-webserver.log")
        yield url
    finally:
        for proc in reversed(procs):
            _stop(proc)


@contextmanager
def moto_s3(logs: Path):
    """moto's S3-compatible server on loopback; yields the AWS environment that points at it."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "moto.log"
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_url(f"{url}/moto-api/", 60, proc, log)
        yield {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }
    finally:
        _stop(proc)

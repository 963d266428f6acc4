"""`pgx validate-inputs` and raw-path resolution: the pgx layout, the legacy pipeline's partitioned imputed silver,
the legacy pipeline's non-partitioned silver glob, explicit overrides, and a clear error when nothing is there."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from pgx_dagster.datasets import IMPUTED, SILVER
from pgx_dagster.lake import LakeResource
from pgx_dagster.raw_inputs import raw_glob, validate_inputs
from pgx_dagster_tests.helpers import glob_of, path_of
from pgx_dagster_tests.services import REPO


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dest)


def legacy_layout(raw: Path, tmp: Path, partitioned: bool, legacy: bool) -> Path:
    """A lake of the legacy pipeline (its layout is ours, pgx_dagster/datasets.py) as raw input."""
    root = tmp / "legacy_lake"
    for table in ("member_eligibility", "member_linkage"):
        _copy(next((raw / table).glob("*.parquet")), root / table / "part.parquet")
    for kind in ("medical", "pharmacy"):
        src = next((raw / f"{kind}_claims").glob("*.parquet"))
        if partitioned:
            _copy(src, path_of(root, IMPUTED[kind], "65-74|2019", "part.parquet"))
        if legacy:
            _copy(src, root / SILVER[kind].folder / "part.parquet")
    return root


def partitioned_glob(root: Path, kind: str) -> str:
    return glob_of(root, IMPUTED[kind], "*.parquet")


def test_pgx_layout_is_used_when_present(synthetic_raw):
    ok, lines = validate_inputs(LakeResource(raw_root=str(synthetic_raw.path)))
    assert ok
    assert f"uses {synthetic_raw.path}/medical_claims/*.parquet (the pgx raw layout)" in "\n".join(lines)


def test_partitioned_imputed_silver_is_preferred_over_the_legacy_glob(synthetic_raw, tmp_path):
    root = legacy_layout(synthetic_raw.path, tmp_path, partitioned=True, legacy=True)
    lake = LakeResource(raw_root=str(root))
    ok, lines = validate_inputs(lake)
    assert ok
    assert "uses " + partitioned_glob(root, "medical") in "\n".join(lines)
    assert raw_glob(lake, "pharmacy_claims") == partitioned_glob(root, "pharmacy")


def test_legacy_silver_glob_when_it_is_all_there_is(synthetic_raw, tmp_path):
    root = legacy_layout(synthetic_raw.path, tmp_path, partitioned=False, legacy=True)
    ok, lines = validate_inputs(LakeResource(raw_root=str(root)))
    assert (
        ok
        and f"uses {root}/silver/medical/*.parquet (the legacy pipeline's non-partitioned silver glob)"
        in "\n".join(lines)
    )


def test_an_explicit_override_is_used_as_given(synthetic_raw, tmp_path):
    root = legacy_layout(synthetic_raw.path, tmp_path, partitioned=True, legacy=True)
    lake = LakeResource(raw_root=str(root), raw_overrides={"medical_claims": f"{root}/silver/medical/*.parquet"})
    assert raw_glob(lake, "medical_claims") == f"{root}/silver/medical/*.parquet"


def test_cli_fails_clearly_when_neither_exists(tmp_path):
    env = {**os.environ, "PGX_RAW_ROOT": str(tmp_path / "empty")}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "pgx"), "validate-inputs"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 2
    assert "ERROR: no files for medical_claims; tried" in done.stdout
    assert partitioned_glob(tmp_path / "empty", "medical") in done.stdout and "silver/medical/*.parquet" in done.stdout


def _validate_on(endpoint: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PGX_RAW_ROOT": "s3://pgx/raw", "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "DAGSTER_HOME": str(tmp_path),
           "PGX_S3_CONNECT_TIMEOUT": "1", "PGX_S3_READ_TIMEOUT": "2", "PGX_S3_ATTEMPTS": "1"}  # fmt: skip
    pgx = str(Path(sys.executable).parent / "pgx")
    # the subprocess timeout only catches a hang: the timeouts above end it in seconds
    return subprocess.run([pgx, "validate-inputs"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_validate_inputs_with_s3_refusing_or_silent_prints_one_line_not_a_traceback(tmp_path):
    import socket

    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    closed_port = refused.getsockname()[1]
    refused.close()  # nothing listens there: connections are refused
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # accepts connections (the kernel's backlog) and never answers
    try:
        for endpoint in (f"http://127.0.0.1:{closed_port}", f"http://127.0.0.1:{silent.getsockname()[1]}"):
            done = _validate_on(endpoint, tmp_path)
            out = done.stdout + done.stderr
            assert done.returncode != 0, out
            assert "Traceback" not in out and 'File "' not in out, out
            errors = [line for line in out.splitlines() if endpoint in line]
            assert len(errors) == 1 and "Check AWS_ENDPOINT_URL" in errors[0], out
    finally:
        silent.close()

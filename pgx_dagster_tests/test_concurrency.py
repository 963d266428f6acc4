"""Two runs materializing the same partition at once - two backfills, a re-run racing a retry - end
with one complete, consistent partition, never files of both: publishing a folder is serialized per
folder (LakeResource.publish_dir's lock), locally and on S3 (moto's server on loopback).

Two writer processes publish the same partition folders at the same moments (round i of both into
folder i), every file and the checkpoint carrying the writer's tag; each folder must end with one
writer's files only, all of them, and a local reader never sees a folder that mixes them. A reader of
a file in a folder being re-published always finds it (the folders swap in one rename)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pgx_dagster.lake import LakeResource, s3_client
from pgx_dagster_tests.services import REPO, moto_s3

FILES = ("a.parquet", "b.parquet", "c.parquet")
ROUNDS = 40
WRITER = f"""
import json, sys
from pathlib import Path
import duckdb
from pgx_dagster.lake import LakeResource
root, final, tag, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lake = LakeResource(lake_root=root)
con = duckdb.connect()
for i in range(rounds):
    with lake.publish_dir(f"{{final}}/round={{i}}") as tmp:
        for name in {FILES!r}:
            con.execute(f"COPY (SELECT '{{tag}}' AS tag, {{i}} AS round, range AS n FROM range(2000)) "
                        f"TO '{{tmp}}/{{name}}' (FORMAT parquet)")
        Path(tmp, "_checkpoint.json").write_text(json.dumps({{"tag": tag, "round": i}}))
print("done")
"""


def start_writers(root: str, final: str, env: dict | None = None) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, root, final, tag, str(ROUNDS)],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for tag in ("A", "B")
    ]


def local_state(final: Path) -> tuple[set[str], set[tuple[str, int]]] | None:
    """The folder's files and the (tag, round) of each, read through one directory handle: one version
    of the folder. None when there is no folder at that instant, or when the version read was replaced
    meanwhile (its files are being removed: a reader holding it sees them go, which says nothing about
    what the writers did)."""
    try:
        fd = os.open(final, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return None
    try:
        names = set(os.listdir(fd))
        if os.stat(final).st_ino != os.fstat(fd).st_ino:
            return None
        versions = set()
        con = duckdb.connect()
        for name in names:
            data = Path(f"/proc/self/fd/{fd}/{name}")
            if name.endswith(".parquet"):
                versions |= set(con.execute(f"SELECT DISTINCT tag, round FROM '{data}'").fetchall())
            else:
                record = json.loads(data.read_text())
                versions.add((record["tag"], record["round"]))
        if os.stat(final).st_ino != os.fstat(fd).st_ino:
            return None
        return names, versions
    except (FileNotFoundError, duckdb.IOException):  # that version was being removed: look again
        return local_state(final)
    finally:
        os.close(fd)


def test_two_writers_of_one_local_partition_never_mix(tmp_path):
    final = tmp_path / "lake" / "gold" / "events" / "age_band=65-74"
    writers = start_writers(str(tmp_path / "lake"), str(final))
    seen = 0
    while any(w.poll() is None for w in writers):
        for folder in final.glob("round=*"):
            state = local_state(folder)
            if state is not None:
                names, versions = state
                assert names == {*FILES, "_checkpoint.json"}, names
                assert len(versions) == 1, versions  # every file of one publish, none of another
                seen += 1
        time.sleep(0.01)
    for w in writers:
        out, err = w.communicate()
        assert w.returncode == 0 and "done" in out, err[-2000:]
    for i in range(ROUNDS):
        names, versions = local_state(final / f"round={i}")
        assert names == {*FILES, "_checkpoint.json"} and len(versions) == 1, (i, versions)
    assert seen > 10
    # nothing left behind: no staging or trash folder of either writer
    assert sorted(p.name for p in final.iterdir() if p.is_dir()) == sorted(f"round={i}" for i in range(ROUNDS))


REPUBLISHER = """
import sys
from pathlib import Path
from pgx_dagster.lake import LakeResource
root, final, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
lake = LakeResource(lake_root=root)
for i in range(rounds):
    with lake.publish_dir(final) as tmp:
        Path(tmp, "cohort.parquet").write_text(str(i))
print("done")
"""


def test_a_file_of_a_republished_local_folder_is_never_missing(tmp_path):
    """A reader that listed a partition's file (a cohort's design check reading its siblings) must find it
    while another run re-publishes that partition: the old and new folder swap in one rename. With a
    rename aside and then one into place, this reader saw the file missing about once per publish."""
    final = tmp_path / "lake" / "gold" / "cohort" / "event_year=2020"
    listed = final / "cohort.parquet"
    with LakeResource(lake_root=str(tmp_path / "lake")).publish_dir(str(final)) as tmp:
        Path(tmp, "cohort.parquet").write_text("first")
    writer = subprocess.Popen(
        [sys.executable, "-c", REPUBLISHER, str(tmp_path / "lake"), str(final), "1000"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    looks = missing = 0
    while writer.poll() is None:
        looks += 1
        missing += not listed.exists()
    out, err = writer.communicate()
    assert writer.returncode == 0 and "done" in out, err[-2000:]
    assert looks > 10_000 and missing == 0, (looks, missing)
    assert listed.read_text() == "999"
    assert [p.name for p in final.parent.iterdir() if p.is_dir()] == ["event_year=2020"]  # no staging, no trash


def test_where_folders_cannot_swap_in_one_rename_publishing_still_replaces_the_folder_and_says_so(
    tmp_path, monkeypatch, caplog
):
    from pgx_dagster import lake as lake_module

    monkeypatch.setattr(lake_module, "_exchange", lambda a, b: False)
    lake, final = LakeResource(lake_root=str(tmp_path)), tmp_path / "silver" / "part"
    for version in ("old", "new", "newer"):
        with lake.publish_dir(str(final)) as tmp:
            Path(tmp, f"{version}.parquet").write_text(version)
    assert [p.name for p in final.iterdir()] == ["newer.parquet"]
    assert [p.name for p in final.parent.iterdir() if p.is_dir()] == ["part"]
    warnings = [r.getMessage() for r in caplog.records if "RENAME_EXCHANGE" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(str(final.parent)), warnings  # once per folder


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with moto_s3(REPO / "test-artifacts" / "logs", adopt=True) as env:
        s3_client().create_bucket(Bucket="concurrent")
        yield env


def s3_state(prefix: str) -> tuple[set[str], set[tuple[str, int]]]:
    client = s3_client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="concurrent", Prefix=prefix + "/").get("Contents", [])]
    versions = set()
    con = duckdb.connect()
    for key in keys:
        body = client.get_object(Bucket="concurrent", Key=key)["Body"].read()
        if key.endswith(".json"):
            record = json.loads(body)
            versions.add((record["tag"], record["round"]))
        else:
            path = Path(f"/tmp/pgx_concurrency_{os.getpid()}.parquet")
            path.write_bytes(body)
            versions |= set(con.execute(f"SELECT DISTINCT tag, round FROM '{path}'").fetchall())
            path.unlink()
    return {k.rsplit("/", 1)[-1] for k in keys}, versions


def test_two_writers_of_one_s3_partition_never_mix(s3):
    prefix = "lake/writers/age_band=65-74"  # any folder: publishing does not care what it holds
    writers = start_writers("s3://concurrent/lake", f"s3://concurrent/{prefix}", s3)
    for w in writers:
        out, err = w.communicate(timeout=600)
        assert w.returncode == 0 and "done" in out, err[-2000:]
    for i in range(ROUNDS):
        names, versions = s3_state(f"{prefix}/round={i}")
        assert names == {*FILES, "_checkpoint.json"} and len(versions) == 1, (i, versions)
    # the locks are released: no lock object left
    keys = [o["Key"] for o in s3_client().list_objects_v2(Bucket="concurrent", Prefix="lake/").get("Contents", [])]
    assert not [k for k in keys if k.endswith(".lock")]


def test_a_lock_left_by_a_dead_publisher_is_taken_over(s3, monkeypatch):
    from pgx_dagster import lake as lake_module

    final = "s3://concurrent/lake/stale/age_band=0-17/event_year=2016"
    s3_client().put_object(Bucket="concurrent", Key="lake/stale/age_band=0-17/event_year=2016.lock", Body=b"dead")
    monkeypatch.setattr(lake_module, "LOCK_STALE_SECONDS", 0)
    with LakeResource(lake_root="s3://concurrent/lake").publish_dir(final) as tmp:
        Path(tmp, "x.parquet").write_bytes(b"1")
    keys = s3_client().list_objects_v2(Bucket="concurrent", Prefix="lake/stale/").get("Contents", [])
    assert [o["Key"] for o in keys] == ["lake/stale/age_band=0-17/event_year=2016/x.parquet"]

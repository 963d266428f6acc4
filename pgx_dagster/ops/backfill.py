"""Asset backfills through the webserver's GraphQL API - the API the UI itself uses.

`pgx backfill --all` (or `--partitions '65-74|2019,...'`) submits an asset backfill, shows a progress
bar of done / running / failed partitions per asset, and exits non-zero naming what failed - also when
every partition was materialized but a run failed after it (a failed blocking check).
`pgx backfill --reexecute-failed ID` is the UI's "Re-execute failed" for backfill ID.

What a backfill targets is printed when it starts, grouped by partitioning ("220 asset-partitions: all 35
age_band|event_year partitions x 6 assets; ..."). The backfill page's "Partition selection" is Dagster's
own summary: the partitions of the first partitioned asset the backfill targets (`rootTargetedPartitions`),
and Dagster applies `--partitions` keys to that asset. So `--partitions` without `--assets` selects the
assets that have those partitions: the page shows the keys given. A backfill of the whole graph starts at
claims_intake, partitioned by shard, and the page shows its shard ("000"); the per-asset table under it
is the whole selection.
The daemon must be running for a backfill to progress: `make dev` starts the webserver and `pgx daemon`
(`pgx materialize` starts what is missing itself, ops/materialize.py).

A minimal client on the standard library: dagster-graphql's DagsterGraphQLClient covers jobs and runs
but has no call for asset backfills, which is all this needs.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_URL = "http://127.0.0.1:3000"
FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED", "FAILING"}


def _backfill_mutation(field: str, argument: str, params_type: str) -> str:
    """A mutation that starts a backfill and answers its id or an error."""
    return f"""
mutation Backfill($params: {params_type}!) {{
  {field}({argument}: $params) {{
    __typename
    ... on LaunchBackfillSuccess {{ backfillId }}
    ... on Error {{ message }}
  }}
}}"""


LAUNCH = _backfill_mutation("launchPartitionBackfill", "backfillParams", "LaunchBackfillParams")
REEXECUTE = _backfill_mutation("reexecutePartitionBackfill", "reexecutionParams", "ReexecutionParams")

STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PythonError { message }
    ... on BackfillNotFoundError { message }
    ... on PartitionBackfill {
      id status
      assetBackfillData {
        assetBackfillStatuses {
          __typename
          ... on AssetPartitionsStatusCounts {
            assetKey { path } numPartitionsTargeted numPartitionsInProgress numPartitionsMaterialized
            numPartitionsFailed
          }
          ... on UnpartitionedAssetStatus { assetKey { path } inProgress materialized failed }
        }
      }
    }
  }
}"""

RUNS = """
query Runs($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    __typename
    ... on Runs { results { runId status tags { key value } assetSelection { path } } }
    ... on PythonError { message }
  }
}"""

REQUESTED = """
query Requested { partitionBackfillsOrError(status: REQUESTED) { ... on PartitionBackfills { results { id title } } } }
"""
CANCEL = """
mutation Cancel($id: String!) {
  cancelPartitionBackfill(backfillId: $id) {
    __typename ... on PythonError { message } ... on UnauthorizedError { message }
  }
}
"""
ASSET_KEYS = """
query Keys { assetNodes { assetKey { path } isExecutable isPartitioned } }
"""
PARTITIONINGS = """
query Partitionings {
  assetNodes {
    assetKey { path } isExecutable partitionKeys
    partitionDefinition { type dimensionTypes { name } }
  }
}
"""


class GraphQLError(RuntimeError):
    pass


class Client:
    """A minimal GraphQL client for the Dagster webserver (no dependency beyond the stdlib)."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 60):
        self.endpoint = url.rstrip("/") + "/graphql"
        self.timeout = timeout

    def query(self, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": text, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.endpoint, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # GraphQL validation errors come back as 400 with a body
            try:
                payload = json.loads(exc.read())
            except ValueError:
                raise GraphQLError(f"{self.endpoint}: HTTP {exc.code}") from exc
        except urllib.error.URLError as exc:
            raise GraphQLError(f"cannot reach the Dagster webserver at {self.endpoint}: {exc}") from exc
        if payload.get("errors"):
            raise GraphQLError("; ".join(e.get("message", str(e)) for e in payload["errors"]))
        return payload["data"]

    def executable_assets(self) -> list[str]:
        nodes = self.query(ASSET_KEYS)["assetNodes"]
        return sorted("/".join(n["assetKey"]["path"]) for n in nodes if n["isExecutable"])

    def partitionings(self) -> dict[str, Partitioning]:
        """Every executable asset's partitions, by asset key."""
        out = {}
        for node in self.query(PARTITIONINGS)["assetNodes"]:
            if node["isExecutable"]:
                definition = node["partitionDefinition"] or {}
                dimensions = [d["name"] for d in definition.get("dimensionTypes") or []]
                name = "|".join(dimensions) if definition.get("type") == "MULTIPARTITIONED" else ""
                out["/".join(node["assetKey"]["path"])] = Partitioning(name, tuple(node["partitionKeys"] or ()))
        return out

    def assets_with_partitions(self, partitions: list[str]) -> list[str]:
        """The executable assets that have every one of `partitions`: what `--partitions` selects by default.
        Dagster applies partition keys to the backfill's first asset, and the whole graph's first asset
        (claims_intake) is partitioned by shard, not by age_band|event_year."""
        chosen = sorted(a for a, p in self.partitionings().items() if set(partitions) <= set(p.keys))
        if not chosen:
            raise GraphQLError(
                f"no asset has the partition(s) {', '.join(partitions)}: name partitions of one kind, e.g. "
                "age_band|event_year keys ('65-74|2019'), a cohort ('opioid_ed') or a shard ('000') (`pgx partitions`)"
            )
        return chosen

    def selection(self, partitions: list[str] | None) -> list[str]:
        """What a backfill of `partitions` targets when no assets are named: the assets that have them, or every
        executable asset."""
        return self.assets_with_partitions(partitions) if partitions else self.executable_assets()

    def launch(
        self, assets: list[str], partitions: list[str] | None, title: str | None = None, description: str | None = None
    ) -> str:
        params: dict[str, Any] = {"assetSelection": [{"path": a.split("/")} for a in assets]}
        if partitions:
            params["partitionNames"] = partitions
        else:
            params["allPartitions"] = True
        if title:
            params["title"] = title
        if description:
            params["description"] = description
        return _backfill_id(self.query(LAUNCH, {"params": params})["launchPartitionBackfill"])

    def requested(self) -> list[dict[str, Any]]:
        """The backfills still in progress: id and title."""
        return self.query(REQUESTED)["partitionBackfillsOrError"].get("results") or []

    def cancel(self, backfill_id: str) -> None:
        result = self.query(CANCEL, {"id": backfill_id})["cancelPartitionBackfill"]
        if result["__typename"] != "CancelBackfillSuccess":
            raise GraphQLError(f"backfill {backfill_id} could not be cancelled: {result.get('message', result)}")

    def reexecute_failed(self, backfill_id: str) -> str:
        params = {"parentRunId": backfill_id, "strategy": "FROM_FAILURE"}
        return _backfill_id(self.query(REEXECUTE, {"params": params})["reexecutePartitionBackfill"])

    def status(self, backfill_id: str) -> BackfillStatus:
        data = self.query(STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if data["__typename"] != "PartitionBackfill":
            raise GraphQLError(f"backfill {backfill_id}: {data.get('message', data['__typename'])}")
        return BackfillStatus.from_graphql(data)

    def runs(self, backfill_id: str) -> list[dict[str, Any]]:
        data = self.query(RUNS, {"id": backfill_id})["runsOrError"]
        if data["__typename"] != "Runs":
            raise GraphQLError(data.get("message", data["__typename"]))
        out = []
        for run in data["results"]:
            tags = {t["key"]: t["value"] for t in run["tags"]}
            out.append(
                {
                    "run_id": run["runId"],
                    "status": run["status"],
                    "partition": _partition_of(tags),
                    "assets": ["/".join(a["path"]) for a in run["assetSelection"] or []],
                    "retry_of": tags.get("dagster/parent_run_id"),  # a run retry's failed run
                    "will_retry": tags.get("dagster/will_retry"),  # set on a failed run by the daemon: "true"/"false"
                }
            )
        return out

    def wait(self, backfill_id: str, timeout: float, poll: float = 2.0, on_tick=None) -> BackfillStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(backfill_id)
            if on_tick:
                on_tick(status)
            if status.finished:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill {backfill_id} still {status.status} after {timeout:.0f} s")
            time.sleep(poll)


@dataclass(frozen=True)
class Partitioning:
    """An asset's partitions: `name`, its dimensions ('age_band|event_year') when it has several, and its keys
    (none: unpartitioned)."""

    name: str
    keys: tuple[str, ...]


def selection_summary(partitionings: dict[str, Partitioning], status: BackfillStatus) -> str:
    """What a backfill targets - the named partitions and those Dagster added downstream of them - grouped by
    partitioning, e.g. '220 asset-partitions: all 35 age_band|event_year partitions x 6 assets, ...'."""
    groups: dict[tuple[str, int, int, str], int] = {}
    for asset, counts in status.per_asset.items():
        p = partitionings.get(asset, Partitioning("", ()))
        group = (p.name, counts["targeted"] if p.keys else 0, len(p.keys), p.keys[0] if p.keys else "")
        groups[group] = groups.get(group, 0) + 1
    parts = []
    for (name, targeted, total, example), n in sorted(groups.items(), key=lambda g: (-g[0][1], g[0][0], g[0][3])):
        assets = f"{n} asset{'s' * (n != 1)}"
        if not total:
            parts.append(f"{assets} unpartitioned")
            continue
        if total == 1:
            parts.append(f"partition {example} x {assets}")
            continue
        kind = f"{name} partitions" if name else f"partitions (like {example})"
        parts.append(f"{'all' if targeted == total else f'{targeted} of'} {total} {kind} x {assets}")
    return f"{status.totals()['targeted']} asset-partitions: {'; '.join(parts)}"


def _partition_of(tags: dict[str, str]) -> str | None:
    """A run's partition, or its range ('first … last') when a backfill put several in one run."""
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    first, last = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if first and last:
        return first if first == last else f"{first} … {last}"
    return None


def _backfill_id(result: dict[str, Any]) -> str:
    if result["__typename"] != "LaunchBackfillSuccess":
        raise GraphQLError(f"backfill not launched: {result['__typename']}: {result.get('message', '')}")
    return result["backfillId"]


@dataclass
class BackfillStatus:
    backfill_id: str
    status: str
    per_asset: dict[str, dict[str, int]]

    @classmethod
    def from_graphql(cls, data: dict[str, Any]) -> BackfillStatus:
        per_asset = {}
        for s in (data.get("assetBackfillData") or {}).get("assetBackfillStatuses", []):
            key = "/".join(s["assetKey"]["path"])
            if s["__typename"] == "AssetPartitionsStatusCounts":
                per_asset[key] = {
                    "targeted": s["numPartitionsTargeted"],
                    "running": s["numPartitionsInProgress"],
                    "done": s["numPartitionsMaterialized"],
                    "failed": s["numPartitionsFailed"],
                }
            else:
                per_asset[key] = {
                    "targeted": 1,
                    "running": int(s["inProgress"]),
                    "done": int(s["materialized"]),
                    "failed": int(s["failed"]),
                }
        return cls(data["id"], data["status"], per_asset)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def totals(self) -> dict[str, int]:
        keys = ("targeted", "running", "done", "failed")
        return {k: sum(v[k] for v in self.per_asset.values()) for k in keys}

    @property
    def succeeded(self) -> bool:
        t = self.totals()
        return self.status in ("COMPLETED", "COMPLETED_SUCCESS") and t["failed"] == 0 and t["done"] == t["targeted"]


def progress_line(status: BackfillStatus, width: int = 30) -> str:
    t = status.totals()
    total = max(t["targeted"], 1)
    done = int(width * t["done"] / total)
    failed = int(width * t["failed"] / total)
    bar = "#" * done + "x" * failed + "." * max(0, width - done - failed)
    return (
        f"[{bar}] {t['done']}/{t['targeted']} asset-partitions done, {t['running']} running, "
        f"{t['failed']} failed  ({status.status})"
    )


def follow(client: Client, backfill_id: str, timeout: float, echo: Callable[[str], None] = print) -> BackfillStatus:
    """Wait for a backfill, showing its progress: on a terminal a line redrawn in place, otherwise (a log,
    a cron job) a line when it changes, at most every 10 s, and the last one."""
    tty = sys.stdout.isatty() and echo is print
    last = {"line": "", "at": 0.0}

    def tick(status: BackfillStatus) -> None:
        line = progress_line(status)
        if line == last["line"]:
            return
        if tty:
            print("\r" + line, end="", flush=True)
        elif status.finished or time.monotonic() - last["at"] >= 10:
            echo(line)
            last["at"] = time.monotonic()
        last["line"] = line

    status = client.wait(backfill_id, timeout, poll=0.5, on_tick=tick)
    if tty:
        print()
    return status


# A run that has ended (FINISHED above: a backfill that has).
RUN_FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


def failed_runs(
    client: Client, backfill_id: str, grace_s: float = 15.0, timeout_s: float = 1800.0, poll_s: float = 1.0
) -> list[dict[str, Any]]:
    """The backfill's failed or canceled runs that no run retry redid (a lost run process is retried,
    dagster.yaml `run_retries`: the retry's outcome is the one that counts).

    A backfill can end before a failed run's retry exists: a run whose process died after its partitions were
    materialized (in its check step, say) leaves nothing for the backfill to wait on, and the daemon decides
    on the retry a moment later (dagster-io/dagster#34204). So this waits - for a failed run the daemon has
    not yet judged (no `dagster/will_retry` tag), up to `grace_s`; for one it will retry, until the retry
    exists and has finished, up to `timeout_s` - and judges by the retry."""
    started = time.monotonic()
    while True:
        runs = client.runs(backfill_id)
        retried = {run["retry_of"] for run in runs if run["retry_of"]}
        failed = [run for run in runs if run["status"] in ("FAILURE", "CANCELED") and run["run_id"] not in retried]
        waited = time.monotonic() - started
        pending = [
            run for run in failed if run["will_retry"] == "true" or (run["will_retry"] is None and waited < grace_s)
        ]
        running_retries = [run for run in runs if run["retry_of"] and run["status"] not in RUN_FINISHED]
        if (not pending and not running_retries) or waited > timeout_s:
            return failed
        time.sleep(poll_s)


def failure_lines(backfill_id: str, status: BackfillStatus, failed: list[dict[str, Any]]) -> list[str]:
    """What failed, per asset and per run with its partitions, and how to re-run only that. A backfill
    whose every partition was materialized can still have failed runs: a failed ERROR check fails its run
    after the materialization, and the backfill has gone on to build on it. `failed`: failed_runs()."""
    lines = [f"Backfill {backfill_id} ended {status.status}."]
    for asset, counts in sorted(status.per_asset.items()):
        if counts["failed"] or counts["done"] < counts["targeted"]:
            lines.append(f"  {asset}: {counts['done']}/{counts['targeted']} done, {counts['failed']} failed")
    for run in failed:
        lines.append(
            f"  failed run {run['run_id']}: partition {run['partition'] or '(none)'}, assets {', '.join(run['assets'])}"
        )
    if status.succeeded:  # every partition materialized: what failed came after, a check or its step
        lines.append(
            "Every targeted partition was materialized, but the runs above failed after it: a check failed, or a check "
            f"step, and what was built on their partitions is not to be used. `pgx status {backfill_id}` (on the "
            "instance) names the checks and counts what was built on them; fix the cause, then backfill those "
            "partitions again."
        )
    else:
        lines.append(f"Re-execute only what failed: pgx backfill --reexecute-failed {backfill_id}")
    return lines


def run_cli(
    url: str, partitions: list[str] | None, assets: list[str] | None, reexecute: str | None, timeout: float, wait: bool
) -> int:
    client = Client(url)
    if reexecute:
        backfill_id = client.reexecute_failed(reexecute)
        print(f"Re-executing the failed partitions of {reexecute} as backfill {backfill_id}")
    else:
        selection = assets or client.selection(partitions)
        requested = f"partitions {', '.join(partitions)}" if partitions else "all partitions"
        backfill_id = client.launch(
            selection, partitions, title="pgx backfill", description=f"{requested} of {', '.join(selection)}"
        )
        summary = selection_summary(client.partitionings(), client.status(backfill_id))
        print(f"Backfill {backfill_id}: {len(selection)} assets, {summary} -> {url}/runs/b/{backfill_id}")
    if not wait:
        return 0
    status = follow(client, backfill_id, timeout)
    failed = failed_runs(client, backfill_id)
    if status.succeeded and not failed:
        print(f"Backfill {backfill_id} completed: every targeted partition materialized, every run succeeded.")
        return 0
    print("\n".join(failure_lines(backfill_id, status, failed)))
    return 1

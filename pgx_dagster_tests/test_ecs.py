"""Runs launched on ECS for real, as far as moto's ECS on loopback allows: the webserver and the project's
daemon on an instance configured like deploy/dagster.yaml (SizedEcsRunLauncher, Fargate), three backfills
submitted as the UI submits them, and the tasks the launcher asked ECS for inspected: command, image,
environment (every PGX_* setting set, no secrets), and CPU / memory sized from the steps' op tags read from
each run's stored execution plan, or from the backfill's `ecs/cpu` / `ecs/memory` tags. moto records the
tasks, it never runs them."""

from __future__ import annotations

import time

import boto3
import pytest
import yaml

from pgx_dagster.ops.backfill import LAUNCH, Client
from pgx_dagster.ops.ecs import forwarded_env_vars, task_size
from pgx_dagster.settings import ENV_NAMES as REGISTRY
from pgx_dagster.settings import SettingError
from pgx_dagster.stages.common import GLOBAL_TASK, PARTITION_TASK
from pgx_dagster_tests.services import ARTIFACTS, REPO, dagster_services, moto_s3

IMAGE = "registry.example/pgx-dagster:test"
# Set in the daemon's environment: every one reaches the tasks, none listed in deploy/dagster.yaml.
SETTINGS = {"PGX_RAW_ROOT": "s3://pgx/raw", "PGX_LAKE_ROOT": "s3://pgx/lake", "PGX_MIN_YEAR": "2016",
            "PGX_MAX_YEAR": "2020", "PGX_EXTRACT_DATE": "2021-06-30", "PGX_SHARDS": "1", "PGX_RAW_FORMAT": "pgx",
            "PGX_MAX_QUARANTINE_RATE": "0.2"}  # fmt: skip
# A backfill's own tags reach each of its runs: the way to size one backfill's tasks by hand.
SIZED_BY_HAND = {"ecs/cpu": "2048", "ecs/memory": "6144"}


def client(service: str, aws: dict):
    return boto3.client(service, endpoint_url=aws["AWS_ENDPOINT_URL"], region_name=aws["AWS_REGION"],
                        aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"])  # fmt: skip


@pytest.fixture(scope="module")
def ecs_tasks(tmp_path_factory):
    """The tasks of a whole-graph backfill, of a one-partition silver backfill and of one with ecs/* tags."""
    base = tmp_path_factory.mktemp("ecs")
    with moto_s3(ARTIFACTS / "logs" / "ecs") as aws:
        ec2, ecs = client("ec2", aws), client("ecs", aws)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="pgx-runs", Description="runs", VpcId=vpc)["GroupId"]
        ecs.create_cluster(clusterName="pgx")
        home = base / "dagster_home"
        home.mkdir()
        deploy = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
        launcher = deploy["run_launcher"]
        # As deployed, but outside ECS: no current task to copy, so the launcher registers a Fargate task
        # definition from the code location's image; the network is the run_task_kwargs a deployment sets.
        launcher["config"].update({
            "use_current_ecs_task_config": False,
            "task_definition": {"requires_compatibilities": ["FARGATE"]},
            "run_task_kwargs": {"cluster": "pgx", "launchType": "FARGATE", "networkConfiguration": {
                "awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group], "assignPublicIp": "DISABLED"}}},
        })  # fmt: skip
        instance = {"run_launcher": launcher, "telemetry": {"enabled": False},
                    "run_queue": {"max_concurrent_runs": 48, "dequeue_interval_seconds": 1}}  # fmt: skip
        (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
        # PGX_MEMORY_PER_WORKER is fixed in deploy/dagster.yaml (2GB): that wins over the environment's.
        env = {**aws, "AWS_DEFAULT_REGION": aws["AWS_REGION"], "DAGSTER_CURRENT_IMAGE": IMAGE, **SETTINGS,
               "PGX_MEMORY_PER_WORKER": "3GB"}  # fmt: skip
        with dagster_services(home, env, base / "logs") as url:
            web = Client(url)
            web.launch(web.executable_assets(), None, title="whole graph")
            web.launch(["silver_medical"], ["65-74|2019"], title="one partition")
            tags = [{"key": k, "value": v} for k, v in SIZED_BY_HAND.items()]
            params = {"assetSelection": [{"path": ["silver_pharmacy"]}], "partitionNames": ["45-54|2018"], "tags": tags}
            launched = web.query(LAUNCH, {"params": params})["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            deadline, tasks = time.monotonic() + 120, []
            while time.monotonic() < deadline and len(tasks) < 3:
                arns = ecs.list_tasks(cluster="pgx")["taskArns"]
                tasks = ecs.describe_tasks(cluster="pgx", tasks=arns)["tasks"] if arns else []
                time.sleep(1)
        definitions = {t["taskDefinitionArn"]: ecs.describe_task_definition(taskDefinition=t["taskDefinitionArn"])
                       ["taskDefinition"] for t in tasks}  # fmt: skip
        yield {"tasks": tasks, "definitions": definitions, "aws": aws}


@pytest.mark.slow  # a backfill through the ECS launcher on moto (30 s): `make test-slow`
def test_each_run_is_one_fargate_task_with_the_dagster_command_and_the_code_image(ecs_tasks):
    assert len(ecs_tasks["tasks"]) == 3, ecs_tasks["tasks"]
    for task in ecs_tasks["tasks"]:
        command = task["overrides"]["containerOverrides"][0]["command"]
        assert command[:3] == ["dagster", "api", "execute_run"]
        assert task["launchType"] == "FARGATE"
    for definition in ecs_tasks["definitions"].values():
        container = definition["containerDefinitions"][0]
        assert container["image"] == IMAGE and container["name"] == "run"
        assert definition["requiresCompatibilities"] == ["FARGATE"]


@pytest.mark.slow  # a backfill through the ECS launcher on moto (30 s): `make test-slow`
def test_task_environment_carries_the_settings_and_no_secret(ecs_tasks):
    aws = ecs_tasks["aws"]
    for definition in ecs_tasks["definitions"].values():
        env = {e["name"]: e["value"] for e in definition["containerDefinitions"][0]["environment"]}
        assert {k: env.get(k) for k in SETTINGS} == SETTINGS  # PGX_SHARDS and PGX_RAW_FORMAT among them
        assert env["PGX_MEMORY_PER_WORKER"] == "3GB"  # the daemon's effective value, from the settings object
        assert env["PGX_CONFIG_FILE"] == "none"  # the values carry the file's: the task reads no other file
        assert {k for k in env if k.startswith("PGX_")} <= REGISTRY.keys()  # settings only, from the registry
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & env.keys()
        assert aws["AWS_SECRET_ACCESS_KEY"] not in str(definition)


@pytest.mark.slow  # a backfill through the ECS launcher on moto (30 s): `make test-slow`
def test_task_cpu_and_memory_follow_the_steps_tags_or_the_backfills(ecs_tasks):
    sizes = {}
    for task in ecs_tasks["tasks"]:
        overrides = task["overrides"]
        container = overrides["containerOverrides"][0]
        assert (str(container["cpu"]), str(container["memory"])) == (overrides["cpu"], overrides["memory"])
        sizes[tuple(overrides[k] for k in ("cpu", "memory"))] = task
    # the global step's run (person_index), a partition's run (silver_medical), and the ecs/* tags' run
    assert set(sizes) == {
        (GLOBAL_TASK["pgx/task_cpu"], GLOBAL_TASK["pgx/task_memory"]),
        (PARTITION_TASK["pgx/task_cpu"], PARTITION_TASK["pgx/task_memory"]),
        (SIZED_BY_HAND["ecs/cpu"], SIZED_BY_HAND["ecs/memory"]),
    }


def test_a_run_is_sized_by_its_largest_step():
    assert task_size([PARTITION_TASK, None, {}]) == {"cpu": "1024", "memory": "3072"}
    assert task_size([PARTITION_TASK, GLOBAL_TASK]) == {"cpu": "4096", "memory": "8192"}
    assert task_size([{"pgx/task_cpu": "1024"}, None]) is None  # half a size is none


def test_each_steps_op_tags_carry_its_size():
    """Every step of the code location has its size as op tags, which a run stores with its execution plan:
    a global or shard step the whole-extract size, a partition's step one worker's (checks as their asset)."""
    from pgx_dagster.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    sizes = {node.name: task_size([node.definition.tags]) for node in job.graph.nodes}
    assert None not in sizes.values(), [k for k, v in sizes.items() if v is None]
    whole = {"cpu": "4096", "memory": "8192"}
    for step in ("person_index", "claims_intake", "person_facts", "member_demographics", "claims_intake_checks"):
        assert sizes[step] == whole, step
    for step in ("silver_medical", "events", "events_checks", "cohort_opioid_ed"):
        assert sizes[step] == {"cpu": "1024", "memory": "3072"}, step


def test_every_setting_set_is_forwarded_and_a_configured_value_wins(tmp_path):
    environ = {"PGX_SHARDS": "4", "PGX_RAW_FORMAT": "apcd", "PGX_MEMORY_PER_WORKER": "3GB", "PGX_PROFILE": "",
               "PGX_CONFIG_FILE": "none", "AWS_SECRET_ACCESS_KEY": "s"}  # fmt: skip
    forwarded = forwarded_env_vars(["PGX_MEMORY_PER_WORKER=2GB", "AWS_REGION"], environ)
    assert forwarded == ["PGX_MEMORY_PER_WORKER=2GB", "AWS_REGION", "PGX_CONFIG_FILE=none", "PGX_RAW_FORMAT=apcd",
                         "PGX_SHARDS=4"]  # fmt: skip
    # the deployment's file reaches the task as values: its image may hold no such file
    config = tmp_path / "aws.toml"
    config.write_text('lake_root = "s3://bucket/lake"\nshards = 2\n')
    forwarded = forwarded_env_vars([], {"PGX_CONFIG_FILE": str(config), "PGX_SHARDS": "3"})
    assert forwarded == ["PGX_CONFIG_FILE=none", "PGX_LAKE_ROOT=s3://bucket/lake", "PGX_SHARDS=3"]
    with pytest.raises(SettingError, match="PGX_NOT_A_SETTING"):
        forwarded_env_vars([], {"PGX_NOT_A_SETTING": "x"})

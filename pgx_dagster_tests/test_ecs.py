"""Runs launched on ECS for real, as far as moto's ECS on loopback allows: the webserver and `pgx daemon` on
an instance configured like deploy/dagster.yaml (SizedEcsRunLauncher, Fargate), two backfills submitted
as the UI submits them, and the tasks the launcher asked ECS for inspected: command, image, environment
(no secrets), and CPU / memory sized from the assets' own tags. moto records the tasks, it never runs them."""

from __future__ import annotations

import time

import boto3
import pytest
import yaml

from pgx_dagster.ops.backfill import Client
from pgx_dagster.ops.ecs import task_size
from pgx_dagster.stages.common import GLOBAL_TASK, PARTITION_TASK
from pgx_dagster_tests.services import ARTIFACTS, REPO, dagster_services, moto_s3

IMAGE = "registry.example/pgx-dagster:test"


def client(service: str, aws: dict):
    return boto3.client(service, endpoint_url=aws["AWS_ENDPOINT_URL"], region_name=aws["AWS_REGION"],
                        aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"])  # fmt: skip


@pytest.fixture(scope="module")
def ecs_tasks(tmp_path_factory):
    """The tasks of a whole-graph backfill and of a one-partition silver backfill."""
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
        env = {**aws, "AWS_DEFAULT_REGION": aws["AWS_REGION"], "DAGSTER_CURRENT_IMAGE": IMAGE,
               "PGX_RAW_ROOT": "s3://pgx/raw", "PGX_LAKE_ROOT": "s3://pgx/lake", "PGX_MIN_YEAR": "2016",
               "PGX_MAX_YEAR": "2020", "PGX_EXTRACT_DATE": "2021-06-30"}  # fmt: skip
        with dagster_services(home, env, base / "logs") as url:
            web = Client(url)
            web.launch(web.executable_assets(), None, title="whole graph")
            web.launch(["silver_medical"], ["65-74|2019"], title="one partition")
            deadline, tasks = time.monotonic() + 120, []
            while time.monotonic() < deadline and len(tasks) < 2:
                arns = ecs.list_tasks(cluster="pgx")["taskArns"]
                tasks = ecs.describe_tasks(cluster="pgx", tasks=arns)["tasks"] if arns else []
                time.sleep(1)
        definitions = {t["taskDefinitionArn"]: ecs.describe_task_definition(taskDefinition=t["taskDefinitionArn"])
                       ["taskDefinition"] for t in tasks}  # fmt: skip
        yield {"tasks": tasks, "definitions": definitions, "aws": aws}


def test_each_run_is_one_fargate_task_with_the_dagster_command_and_the_code_image(ecs_tasks):
    assert len(ecs_tasks["tasks"]) == 2, ecs_tasks["tasks"]
    for task in ecs_tasks["tasks"]:
        command = task["overrides"]["containerOverrides"][0]["command"]
        assert command[:3] == ["dagster", "api", "execute_run"]
        assert task["launchType"] == "FARGATE"
    for definition in ecs_tasks["definitions"].values():
        container = definition["containerDefinitions"][0]
        assert container["image"] == IMAGE and container["name"] == "run"
        assert definition["requiresCompatibilities"] == ["FARGATE"]


def test_task_environment_carries_the_settings_and_no_secret(ecs_tasks):
    aws = ecs_tasks["aws"]
    for definition in ecs_tasks["definitions"].values():
        env = {e["name"]: e["value"] for e in definition["containerDefinitions"][0]["environment"]}
        assert env["PGX_RAW_ROOT"] == "s3://pgx/raw" and env["PGX_LAKE_ROOT"] == "s3://pgx/lake"
        assert env["PGX_MEMORY_PER_WORKER"] == "2GB" and env["PGX_EXTRACT_DATE"] == "2021-06-30"
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & env.keys()
        assert aws["AWS_SECRET_ACCESS_KEY"] not in str(definition)


def test_task_cpu_and_memory_follow_the_assets_tags(ecs_tasks):
    sizes = {}
    for task in ecs_tasks["tasks"]:
        overrides = task["overrides"]
        container = overrides["containerOverrides"][0]
        assert (str(container["cpu"]), str(container["memory"])) == (overrides["cpu"], overrides["memory"])
        sizes[tuple(overrides[k] for k in ("cpu", "memory"))] = task
    # the global step's run (claims_intake) and a partition's run (silver_medical)
    assert set(sizes) == {
        (GLOBAL_TASK["pgx/task_cpu"], GLOBAL_TASK["pgx/task_memory"]),
        (PARTITION_TASK["pgx/task_cpu"], PARTITION_TASK["pgx/task_memory"]),
    }


def test_a_run_is_sized_by_its_largest_asset():
    from dagster import AssetKey

    assert task_size([AssetKey("silver_medical"), AssetKey("events")]) == {"cpu": "1024", "memory": "3072"}
    assert task_size([AssetKey("events"), AssetKey("member_demographics")]) == {"cpu": "4096", "memory": "8192"}
    # a shard's run is sized as a global step's, from the sharded assets' own tags
    for sharded in ("claims_intake", "person_facts", "member_demographics"):
        assert task_size([AssetKey(sharded)]) == {"cpu": "4096", "memory": "8192"}, sharded
    assert task_size([AssetKey("no_such_asset")]) is None

"""moto's server (`python -m pgx_dagster_tests.moto_server -H host -p port`), with two gaps of moto 5.2's
ECS filled, both in what every Fargate task does:
- a task in awsvpc mode asks its network interface for `private_dns_name`, which moto's EC2 model
  lacks (AWS names it ip-<address>.ec2.internal);
- a Fargate task definition sets memory on the task, not on its containers; moto adds the containers'
  memory up and fails on the missing value. A container without its own memory counts as 0 here."""

from moto.ec2.models.elastic_network_interfaces import NetworkInterface
from moto.ecs.models import EC2ContainerServiceBackend
from moto.server import main

if not hasattr(NetworkInterface, "private_dns_name"):
    NetworkInterface.private_dns_name = property(  # type: ignore[attr-defined]
        lambda eni: f"ip-{str(eni.private_ip_address).replace('.', '-')}.ec2.internal"
    )

_requirements = EC2ContainerServiceBackend._calculate_task_resource_requirements


def _task_requirements(task_definition):  # type: ignore[no-untyped-def]
    containers = task_definition.container_definitions
    patched = [c if c.get("memory") or c.get("memoryReservation") or c.get("Memory") else {**c, "memory": 0}
               for c in containers]  # fmt: skip
    task_definition.container_definitions = patched
    try:
        return _requirements(task_definition)
    finally:
        task_definition.container_definitions = containers


EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(_task_requirements)

if __name__ == "__main__":
    main()

# The code image (docs/operations/aws.md): the pgx_dagster code location as its own gRPC server, which
# deploy/workspace.yaml points the webserver and daemon at (host PGX_CODE_LOCATION_HOST, port 4000).
# The same image serves the other roles with another command, Dagster's own daemon and webserver as shipped:
#   ECS run tasks    SizedEcsRunLauncher gives them `dagster api execute_run ...` (the code location's task definition)
#   the daemon       dagster-daemon run -w workspace.yaml
#   the webserver    dagster-webserver -w workspace.yaml -h 0.0.0.0 -p 3000
# Build: docker build -t pgx-dagster .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    # this deployment's settings (config/aws.toml); a container's environment overrides any key, and run tasks
    # receive the effective values with PGX_CONFIG_FILE=none (pgx_dagster/settings.py task_environment)
    PGX_CONFIG_FILE=config/aws.toml

WORKDIR /opt/pgx-dagster

# The code reads sql/, cohorts/ and config/ (the deployments' settings) beside the package (pgx_dagster/settings.py:
# REPO_ROOT), so the project is installed in place (editable) rather than copied into site-packages.
COPY pyproject.toml LICENSE ./
COPY pgx_dagster/ pgx_dagster/
COPY sql/ sql/
COPY cohorts/ cohorts/
COPY config/ config/
RUN pip install --no-cache-dir -e .

# The production instance (Postgres storage, ECS run launcher; every value from the environment) and the
# workspace that reaches the code location over gRPC, for the daemon and webserver containers.
COPY deploy/dagster.yaml /opt/dagster/home/dagster.yaml
COPY deploy/workspace.yaml workspace.yaml

RUN useradd --system --uid 10001 --home-dir /opt/pgx-dagster pgx && chown -R pgx /opt/dagster
USER pgx

EXPOSE 4000
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "pgx_dagster.definitions"]

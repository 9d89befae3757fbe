# syntax=docker/dockerfile:1
# The connector supervisor in a small image: a wheel built in one stage, installed with its
# dependencies into a slim Python image in the next; runs as a non-root user.
#
#   docker build -t flyte-connector-supervisor .
#   docker run -p 8000:8000 -p 9090:9090 -v supervisor-data:/data flyte-connector-supervisor
#
# The SQLite journal and the process connector's job directories live on the /data volume.
# For PostgreSQL, set SUPERVISOR_JOURNAL=postgresql://USER:PASSWORD@HOST/DB (from a secret).
# Every setting: docs/configuration.md. Operating it: docs/operations.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY migrations ./migrations
COPY proto/flyteproto ./proto/flyteproto
COPY connectors ./connectors
COPY supervisor ./supervisor
# Our wheel and a wheel of every dependency (with the PostgreSQL driver and the optional
# connectors' clients): the runtime stage installs from these alone.
RUN pip wheel --wheel-dir /wheels ".[postgres,databricks]"

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# tini runs as PID 1: it forwards SIGTERM to the supervisor and reaps the detached job
# processes of the process connector.
RUN apt-get update \
    && apt-get install -y --no-install-recommends "tini=0.19.*" \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "flyte-connector-supervisor[postgres,databricks]==0.1.0"
RUN groupadd --system --gid 10001 supervisor \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /data \
        --shell /usr/sbin/nologin supervisor \
    && mkdir -p /data \
    && chown 10001:10001 /data
ENV SUPERVISOR_JOURNAL=sqlite:////data/journal.db \
    SUPERVISOR_PROCESS_ROOT=/data/jobs \
    SUPERVISOR_HOST=0.0.0.0 \
    SUPERVISOR_PORT=8000 \
    SUPERVISOR_METRICS_PORT=9090
WORKDIR /data
VOLUME ["/data"]
# gRPC (AsyncConnectorService, ConnectorMetadataService, health, reflection); Prometheus.
EXPOSE 8000 9090
USER 10001:10001
# SERVING only once the journal is open and every unfinished job has its actor back.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "supervisor", "health", "--timeout", "5"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "python", "-m", "supervisor"]
CMD ["serve"]

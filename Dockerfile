# syntax=docker/dockerfile:1
# The connector supervisor in a small image: a wheel built in one stage, installed with its
# dependencies into a slim Python image in the next; runs as a non-root user.
#
#   docker build -t flyte-connector-supervisor .
#   docker run -p 8000:8000 -p 9090:9090 -v supervisor-data:/data flyte-connector-supervisor
#
# It drops into Flyte's flyteconnector Helm chart unchanged: `c0` (flyte-sdk's command line)
# is on PATH; see docs/switching-flyte2.md.
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
# Our wheel and a wheel of every dependency (with the PostgreSQL driver, the optional
# connectors' clients and flyte-sdk for its plugins): the runtime stage installs from these.
RUN pip wheel --wheel-dir /wheels ".[postgres,databricks,flytesdk]"

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
# The flytesdk extra (flyte-sdk) hosts unmodified flyteplugins-* connectors: a derived image
# adds one with a single `pip install flyteplugins-NAME` (docs/switching-flyte2.md).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels \
        "flyte-connector-supervisor[postgres,databricks,flytesdk]==0.1.0"
# Flyte's Helm chart runs `c0 --port ... --modules ...` (flyte-sdk's command). flyte-sdk has a
# `c0` script too, which a later pip install may write again: ours comes first on PATH. Under
# the chart's command tini is not the entrypoint, so it starts here (as a subreaper).
RUN mkdir -p /opt/supervisor/bin \
    && printf '#!/bin/sh\nexec tini -s -- python -m supervisor c0 "$@"\n' > /opt/supervisor/bin/c0 \
    && chmod 0755 /opt/supervisor/bin/c0
ENV PATH=/opt/supervisor/bin:$PATH
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

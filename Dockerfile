# fa-sync daemon image. Configure with DATABASE_URL and FA_SYNC_* variables.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md schema.sql ./
COPY daemon ./daemon
COPY profiles ./profiles
COPY simulators ./simulators
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 fasync
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER fasync
WORKDIR /home/fasync
ENV PYTHONUNBUFFERED=1 \
    FA_SYNC_LOG_FORMAT=json \
    FA_SYNC_SHUTDOWN_GRACE_SECONDS=30 \
    FA_SYNC_METRICS_PORT=9108
# /healthz, /readyz, /metrics. Loopback unless FA_SYNC_METRICS_ADDRESS=0.0.0.0 (for a
# Prometheus on the container network); the health check below runs inside the container.
EXPOSE 9108
# 200 while the event loop turns; a stalled loop answers 503 or nothing within the timeout.
# Python's urllib, so the slim image needs no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FA_SYNC_METRICS_PORT', '9108'), timeout=4)"]
# SIGTERM drains running batches (bounded by the grace period) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["fa-sync"]
CMD ["run"]

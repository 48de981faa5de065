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
ENV FA_SYNC_LOG_FORMAT=json \
    FA_SYNC_SHUTDOWN_GRACE_SECONDS=30
# SIGTERM drains running batches (bounded by the grace period) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["fa-sync"]
CMD ["run"]

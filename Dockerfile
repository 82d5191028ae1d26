# One image for every Parley process: pick the process with the command
# (parley-ingest, parley-normalizer, parley-routing, parley-policy, parley-onboarding,
# parley-reports, parley).
# The provider sandbox (parley-sandbox) is for development only: it is in the image only when built
# with --build-arg WITH_SANDBOX=true, as the Compose file does for a laptop.
# Built from uv.lock; the final stage has no compiler, no uv and no source tree, and runs as a
# non-root user with a read-only root filesystem in mind (only /tmp needs to be writable).

FROM python:3.11-slim-bookworm AS build
ARG WITH_SANDBOX=false
ENV UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY shared/ shared/
COPY services/ services/
RUN if [ "$WITH_SANDBOX" = "true" ]; then group="--group sandbox"; fi; \
    uv sync --frozen --no-dev --no-editable $group

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 parley && useradd --system --uid 10001 --gid parley --no-create-home parley
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PARLEY_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8080 8081 8082 8083 8084
CMD ["parley-ingest"]

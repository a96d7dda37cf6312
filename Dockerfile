# One image for every idbatch role (worker, beat, listener, gateway, simulator, CLI).
# Stage 1 builds the wheel from the source tree; stage 2 installs only that wheel, so the
# image runs exactly what `pip install idbatch` would (tests/packaging checks the wheel).
FROM python:3.11.10-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11.10-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 IDBATCH_DATA_DIR=/data
COPY --from=build /wheels /wheels
RUN pip install "$(ls /wheels/idbatch-*.whl)[all]" && rm -rf /wheels \
    && useradd --create-home --uid 10001 idbatch \
    && mkdir -p /data && chown idbatch:idbatch /data && chmod 0700 /data
USER idbatch
WORKDIR /data
VOLUME ["/data"]
# The process imports and its settings validate (production refuses placeholder secrets);
# compose adds role-specific checks (worker ping, HTTP health) on top.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["python", "-c", "from idbatch.settings import get_settings; get_settings()"]
ENTRYPOINT ["idbatch"]
CMD ["--help"]

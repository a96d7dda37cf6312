# One image for every idbatch role (worker, beat, simulator, gateway, CLI).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY idbatch ./idbatch
COPY workers ./workers
COPY producers ./producers
COPY db ./db
COPY migrations ./migrations
COPY simulator ./simulator
RUN pip install '.[all]'
RUN useradd --create-home idbatch
USER idbatch
ENTRYPOINT ["idbatch"]

# One image for both services; SERVICE=fanout or SERVICE=worker picks the app.
#   docker build -t order-fanout .
#   docker run -e SERVICE=worker -e PORT=8080 -p 8080:8080 order-fanout
FROM python:3.11.7-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv

# The project's wheel, built from the source.
FROM base AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY orders/ orders/
COPY fanout/ fanout/
COPY worker/ worker/
COPY localcloud/ localcloud/
COPY console/ console/
RUN pip wheel --no-deps --wheel-dir dist .

FROM base
WORKDIR /app
# Dependencies first, in a layer of their own: editing the code does not reinstall
# them. They are the pinned, hash-checked versions of requirements.lock (`make lock`
# writes it from pyproject.toml); `pip check` fails the build if the lock is older
# than a requirement of the wheel.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY --from=wheel /src/dist/ dist/
RUN pip install --no-deps dist/*.whl && rm -rf dist && pip check
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin app
USER 10001

# Cloud Run sets PORT; an empty BIND_HOST listens on every interface of the
# container. orders/serving.py holds gunicorn's settings (workers, threads,
# connections per process, timeouts), read from GUNICORN_WORKERS and GUNICORN_THREADS.
ENV SERVICE=worker \
    BIND_HOST="" \
    PORT=8080 \
    GUNICORN_WORKERS=2 \
    GUNICORN_THREADS=16
CMD exec gunicorn --config python:orders.serving --bind "${BIND_HOST}:${PORT}" --access-logfile - "${SERVICE}.app:create_app()"

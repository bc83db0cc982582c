# Referee's container image. Every command below also runs in tests/integration/test_image.py (wheels
# built, installed offline from them into a fresh environment, `referee serve` started from it), since
# no container engine runs where the tests do.

# --- build: Referee and every dependency as wheels ---------------------------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- run: no compiler, no pip cache, no root --------------------------------------------------------
FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels referee \
    && rm -rf /wheels \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin referee
USER 10001
# gunicorn workers share metrics through files here: mount an emptyDir (the root filesystem can stay
# read-only). The config file, trust policy, trust store and TLS files are mounted under /etc/referee.
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/referee-metrics \
    PYTHONDONTWRITEBYTECODE=1
EXPOSE 8443
ENTRYPOINT ["referee", "serve", "--config", "/etc/referee/config.yaml"]

# The gateway's image (the default target) and the demo Cog model's (`--target demo-model`).
#   docker build -t replicate-gateway .
#   docker build --target demo-model -t replicate-gateway-inpaint .
# Both start from the same Debian slim Python, pinned by digest so that a rebuild gets the same base.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1

# --- builder: the gateway and its pinned dependencies as wheels, installed into a virtualenv ---------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
# Every dependency is pinned with == in pyproject.toml; the install takes only the wheels built here.
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels gateway

# --- model-builder: the demo model's runtime (coglet and OpenCV, pinned in its requirements.txt) ------------------
FROM ${PYTHON_IMAGE} AS model-builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY models/inpaint/requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

# --- demo-model: models/inpaint on a Cog HTTP server (coglet) at :5000 ---------------------------------------------
FROM ${PYTHON_IMAGE} AS demo-model
# coglet starts its worker as a bare `python` found through PATH, so the venv comes first. WEBHOOK_AUTH_TOKEN (the
# bearer the server sends with its webhooks) is given at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    COG_PREDICT_TYPE_STUB=predict.py:Predictor \
    PORT=5000
RUN groupadd --system --gid 10002 model \
    && useradd --system --uid 10002 --gid model --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin model
COPY --from=model-builder /opt/venv /opt/venv
# coglet reads .cog/openapi_schema.json relative to the working directory.
WORKDIR /srv/model
COPY models/inpaint/predict.py models/inpaint/cog.yaml ./
COPY models/inpaint/.cog ./.cog
USER 10002:10002
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health-check', timeout=4)"]
CMD ["python", "-m", "cog.server.http", "--host", "0.0.0.0"]

# --- gateway (default): the virtualenv on a clean base, run as an unprivileged user ------------------------------
FROM ${PYTHON_IMAGE} AS gateway
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000 \
    GATEWAY_DATA_DIR=/data \
    GATEWAY_CATALOG=/app/config/catalog.toml
# The data directory holds the admin token and demo key when none is configured: owner-only, as `gateway serve`
# would make it.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home --home-dir /data --shell /usr/sbin/nologin gateway \
    && install -d -o gateway -g gateway -m 0700 /data
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# The image's catalog sits beside the schemas it names; mount another over /app/config/catalog.toml.
COPY config/schemas ./config/schemas
COPY deploy/catalog.toml ./config/catalog.toml
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
# Liveness on the address the gateway itself would use for a local call (GATEWAY_HOST may be a pod or service
# address rather than 0.0.0.0); python, because the slim base has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; from gateway.config import Settings; urllib.request.urlopen(Settings().local_base_url() + '/health', timeout=4)"]
ENTRYPOINT ["gateway"]
CMD ["serve"]

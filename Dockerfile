# The Strangler proxy. Build from the repo root: docker build -t strangler .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/app
WORKDIR /app

RUN pip install --no-cache-dir \
      "aiohttp>=3.11,<4" "uvloop>=0.21" "pyyaml>=6.0" "jmespath>=1.0" "redis>=5.0" \
      "prometheus-client>=0.20" "opentelemetry-api>=1.27" "opentelemetry-sdk>=1.27" \
      "opentelemetry-exporter-otlp-proto-http>=1.27" "httpx>=0.27"

COPY proxy/ proxy/
COPY acl/ acl/
COPY routes.yaml /etc/strangler/routes.yaml
# The demo file keeps its shadow diffs beside itself; /etc/strangler is not the service
# user's to write, so point the store at its state folder.
RUN sed -i 's#store: sqlite:///strangler-shadow.db#store: sqlite:////var/lib/strangler/shadow.db#' \
      /etc/strangler/routes.yaml && grep -q '/var/lib/strangler/shadow.db' /etc/strangler/routes.yaml

RUN useradd --system --uid 10001 strangler && mkdir -p /var/lib/strangler \
    && chown strangler /var/lib/strangler
USER strangler

EXPOSE 8080 8081
HEALTHCHECK --interval=5s --timeout=3s --retries=12 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/-/ready', timeout=2)"
CMD ["python", "-m", "proxy.cli", "serve", "-c", "/etc/strangler/routes.yaml"]

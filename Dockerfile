# Kontakt: one image for every process; the command picks the process.
# The default target is the product; `dev` adds the local tooling (the Graph-compatible server).
FROM python:3.11-slim AS base
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml constraints.txt README.md ./
COPY services ./services
COPY shared ./shared
RUN pip install --no-cache-dir -c constraints.txt .
# Every process listens on all interfaces inside its container.
ENV KONTAKT_API_HOST=0.0.0.0 KONTAKT_QUERY_HOST=0.0.0.0 KONTAKT_WEB_HOST=0.0.0.0 KONTAKT_HEALTH_HOST=0.0.0.0 \
    KONTAKT_SYNC_GRAPH_SERVER_HOST=0.0.0.0

FROM base AS dev
COPY devstack ./devstack
RUN pip install --no-cache-dir -c constraints.txt .
USER nobody
EXPOSE 28080
CMD ["kontakt", "graph-server"]

FROM base AS product
USER nobody
EXPOSE 8000 8001 8080
CMD ["kontakt", "serve", "contacts"]

# Kontakt: one image for every process; the command picks the process.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml constraints.txt README.md ./
COPY services ./services
COPY shared ./shared
COPY docs/contract ./docs/contract
RUN pip install --no-cache-dir -c constraints.txt .
USER nobody
# Every process listens on all interfaces inside its container.
ENV KONTAKT_API_HOST=0.0.0.0 KONTAKT_QUERY_HOST=0.0.0.0 KONTAKT_HEALTH_HOST=0.0.0.0 \
    KONTAKT_SYNC_GRAPH_SERVER_HOST=0.0.0.0
EXPOSE 8000 8001 8080
CMD ["kontakt", "serve", "contacts"]

# Kontakt: one image for every process; the command picks the process.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY services ./services
COPY shared ./shared
RUN pip install --no-cache-dir -c constraints.txt .
USER nobody
ENV KONTAKT_API_HOST=0.0.0.0
EXPOSE 8000
CMD ["kontakt", "serve", "contacts"]

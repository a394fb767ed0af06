FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    P2P_DATABASE_URL=sqlite:////data/p2p.db

WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY worker ./worker
COPY jobs ./jobs
COPY shared ./shared
COPY cli ./cli
COPY bench ./bench
COPY p2p_client ./p2p_client
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 p2p \
    && mkdir /data && chown p2p /data
USER p2p
VOLUME /data
EXPOSE 8000 9191
CMD ["p2p", "api", "--host", "0.0.0.0", "--port", "8000"]

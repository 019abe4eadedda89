# The kbqa app (web UI + API). The LLM and Chroma run in their own containers: see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/kbqa

# torch first and alone, then the locked tree without resolving again: the same pins as `make setup`.
COPY pyproject.toml requirements.lock ./
RUN pip install torch==2.13.0 && pip install --no-deps -r requirements.lock

COPY rag ./rag
COPY ingest ./ingest
COPY prompts ./prompts
COPY knowledge ./knowledge
COPY app.py README.md ./
RUN pip install --no-deps -e .

EXPOSE 8000
CMD ["python", "app.py"]

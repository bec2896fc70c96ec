# The jobsys image for compose: web app, workers, beat and Flower share it.
FROM python:3.11-slim
WORKDIR /app
# bubblewrap: the python worker runs function steps' code in a sandbox (workers/sandbox).
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md beat_schedule.py ./
COPY jobsys ./jobsys
COPY workers ./workers
COPY webui ./webui
RUN pip install --no-cache-dir .
ENV JOBSYS_DATA_DIR=/data
VOLUME ["/data"]

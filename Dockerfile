# The jobsys image for compose: web app, workers, beat and Flower share it.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md beat_schedule.py ./
COPY jobsys ./jobsys
COPY workers ./workers
COPY webui ./webui
RUN pip install --no-cache-dir .
ENV JOBSYS_DATA_DIR=/data
VOLUME ["/data"]

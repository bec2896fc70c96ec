"""The one service layer: every door into jobsys (web UI, API, CLI, scheduler,
workers) calls these functions and nothing else touches SQL or Celery."""

from jobsys.service.control import (
    cancel_for_revoked_task,
    cancel_job,
    is_cancelled,
    running_job_ids,
)
from jobsys.service.dispatching import dispatch_step, sweep_outbox
from jobsys.service.jobs import (
    get_job,
    job_logs,
    job_results,
    job_stats,
    job_tasks,
    list_jobs,
    list_workers,
    submit_job,
)
from jobsys.service.live import follow_job
from jobsys.service.progress import (
    LogRecord,
    TaskStart,
    announce,
    append_logs,
    complete_step,
    finish_job,
    finish_task,
    gather_function_step,
    publish_logs,
    record_attempt,
    start_task,
)
from jobsys.service.records import JobInfo
from jobsys.service.rerun import rerun_job, resume_job
from jobsys.service.tokens import IssuedToken, authenticate, bootstrap_token, create_token

__all__ = [
    "IssuedToken",
    "JobInfo",
    "LogRecord",
    "TaskStart",
    "announce",
    "append_logs",
    "authenticate",
    "bootstrap_token",
    "cancel_for_revoked_task",
    "cancel_job",
    "complete_step",
    "create_token",
    "dispatch_step",
    "finish_job",
    "finish_task",
    "follow_job",
    "gather_function_step",
    "get_job",
    "is_cancelled",
    "job_logs",
    "job_results",
    "job_stats",
    "job_tasks",
    "list_jobs",
    "list_workers",
    "publish_logs",
    "record_attempt",
    "rerun_job",
    "resume_job",
    "running_job_ids",
    "start_task",
    "submit_job",
    "sweep_outbox",
]

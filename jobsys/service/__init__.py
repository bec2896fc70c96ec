"""The one service layer: every door into jobsys (web UI, API, CLI, scheduler,
workers) calls these functions and nothing else touches SQL or Celery."""

from jobsys.service.catalog import (
    Catalog,
    get_template,
    list_catalog,
    reload_catalog,
    render_template,
    start_template,
)
from jobsys.service.control import (
    cancel_for_revoked_task,
    cancel_job,
    is_cancelled,
    running_job_ids,
)
from jobsys.service.dispatching import dispatch_step, sweep_outbox
from jobsys.service.firing import Fired, fire_due_schedules, next_fire_time
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
from jobsys.service.records import JobInfo, ScheduleInfo, ScheduleRunInfo
from jobsys.service.rerun import rerun_job, resume_job
from jobsys.service.retention import Purged, purge_history
from jobsys.service.schedules import (
    create_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
    run_schedule_now,
    schedule_runs,
    update_schedule,
)
from jobsys.service.tokens import IssuedToken, authenticate, bootstrap_token, create_token

__all__ = [
    "Catalog",
    "Fired",
    "IssuedToken",
    "JobInfo",
    "LogRecord",
    "Purged",
    "ScheduleInfo",
    "ScheduleRunInfo",
    "TaskStart",
    "announce",
    "append_logs",
    "authenticate",
    "bootstrap_token",
    "cancel_for_revoked_task",
    "cancel_job",
    "complete_step",
    "create_schedule",
    "create_token",
    "delete_schedule",
    "dispatch_step",
    "finish_job",
    "finish_task",
    "fire_due_schedules",
    "follow_job",
    "gather_function_step",
    "get_job",
    "get_schedule",
    "get_template",
    "is_cancelled",
    "job_logs",
    "job_results",
    "job_stats",
    "job_tasks",
    "list_catalog",
    "list_jobs",
    "list_schedules",
    "list_workers",
    "next_fire_time",
    "publish_logs",
    "purge_history",
    "record_attempt",
    "reload_catalog",
    "render_template",
    "rerun_job",
    "resume_job",
    "run_schedule_now",
    "running_job_ids",
    "schedule_runs",
    "start_task",
    "start_template",
    "submit_job",
    "sweep_outbox",
    "update_schedule",
]

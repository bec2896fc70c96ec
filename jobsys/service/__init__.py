"""The one service layer: every door into jobsys (web UI, API, CLI, scheduler,
workers) calls these functions and nothing else touches SQL or Celery."""

from jobsys.service.audit import AuditInfo, list_audit, record
from jobsys.service.catalog import (
    Catalog,
    get_template,
    list_catalog,
    reload_catalog,
    render_template,
    start_template,
)
from jobsys.service.control import (
    Cancelled,
    cancel_for_revoked_task,
    cancel_job,
    cancel_job_of_task,
    cancel_jobs,
    ended_job_ids,
    is_cancelled,
)
from jobsys.service.dashboard import Dashboard, dashboard
from jobsys.service.dispatching import dispatch_step, sweep_outbox
from jobsys.service.firing import Fired, fire_due_schedules, next_fire_time
from jobsys.service.holds import release_due_jobs
from jobsys.service.idempotency import Idempotency
from jobsys.service.job_list import JobFilter, list_jobs
from jobsys.service.jobs import (
    check_inline_results,
    first_results,
    get_job,
    job_logs,
    job_results,
    job_stats,
    job_tasks,
    submit_job,
)
from jobsys.service.leases import TaskLease, task_lease
from jobsys.service.live import follow_job
from jobsys.service.lost_tasks import Swept, sweep_lost_tasks
from jobsys.service.metrics import Snapshot, metrics_snapshot
from jobsys.service.oidc_users import oidc_sign_in
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
from jobsys.service.projects import (
    ProjectInfo,
    check_project_name,
    create_project,
    list_projects,
    remove_member,
    set_member,
)
from jobsys.service.records import JobInfo, ScheduleInfo, ScheduleRunInfo
from jobsys.service.recovery import abandon_task, settle_job, settle_step, step_of_task
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
from jobsys.service.secrets import (
    Redactor,
    SecretInfo,
    delete_secret,
    list_secrets,
    reveal_secrets,
    secret_names,
    set_secret,
)
from jobsys.service.sign_in_throttle import SignInThrottled
from jobsys.service.tokens import (
    IssuedToken,
    TokenInfo,
    authenticate,
    bootstrap_token,
    create_token,
    list_tokens,
    revoke_token,
)
from jobsys.service.users import (
    UserInfo,
    add_user,
    list_users,
    sign_in,
    update_user,
)
from jobsys.service.waiting import (
    Waited,
    parse_wait_s,
    wait_for_job,
    wait_for_jobs,
    wait_for_results,
)
from jobsys.service.web_sessions import (
    StartedSession,
    end_web_session,
    session_principal,
    start_web_session,
)
from jobsys.service.workers import list_workers, record_heartbeat

__all__ = [
    "AuditInfo",
    "Cancelled",
    "Catalog",
    "Dashboard",
    "Fired",
    "Idempotency",
    "IssuedToken",
    "JobFilter",
    "JobInfo",
    "LogRecord",
    "ProjectInfo",
    "Purged",
    "Redactor",
    "ScheduleInfo",
    "ScheduleRunInfo",
    "SecretInfo",
    "SignInThrottled",
    "Snapshot",
    "StartedSession",
    "Swept",
    "TaskLease",
    "TaskStart",
    "TokenInfo",
    "UserInfo",
    "Waited",
    "abandon_task",
    "add_user",
    "announce",
    "append_logs",
    "authenticate",
    "bootstrap_token",
    "cancel_for_revoked_task",
    "cancel_job",
    "cancel_job_of_task",
    "cancel_jobs",
    "check_inline_results",
    "check_project_name",
    "complete_step",
    "create_project",
    "create_schedule",
    "create_token",
    "dashboard",
    "delete_schedule",
    "delete_secret",
    "dispatch_step",
    "end_web_session",
    "ended_job_ids",
    "finish_job",
    "finish_task",
    "fire_due_schedules",
    "first_results",
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
    "list_audit",
    "list_catalog",
    "list_jobs",
    "list_projects",
    "list_schedules",
    "list_secrets",
    "list_tokens",
    "list_users",
    "list_workers",
    "metrics_snapshot",
    "next_fire_time",
    "oidc_sign_in",
    "parse_wait_s",
    "publish_logs",
    "purge_history",
    "record",
    "record_attempt",
    "record_heartbeat",
    "release_due_jobs",
    "reload_catalog",
    "remove_member",
    "render_template",
    "rerun_job",
    "resume_job",
    "reveal_secrets",
    "revoke_token",
    "run_schedule_now",
    "schedule_runs",
    "secret_names",
    "session_principal",
    "set_member",
    "set_secret",
    "settle_job",
    "settle_step",
    "sign_in",
    "start_task",
    "start_template",
    "start_web_session",
    "step_of_task",
    "submit_job",
    "sweep_lost_tasks",
    "sweep_outbox",
    "task_lease",
    "update_schedule",
    "update_user",
    "wait_for_job",
    "wait_for_jobs",
    "wait_for_results",
]

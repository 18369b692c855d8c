"""Settings read once from ``PFD_*`` environment variables."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DashboardToken", "DashboardUser", "Settings", "get_settings", "mask_secrets"]

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)[^@\s]+@")


def mask_secrets(text: str) -> str:
    """Replace the password of every URL in ``text`` with ``***``."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


DashboardRole = Literal["viewer", "operator"]


class DashboardUser(BaseModel):
    """A dashboard user: their role and the Argon2 hash of their password."""

    role: DashboardRole
    password_hash: SecretStr


class DashboardToken(BaseModel):
    """A bearer token for the API, keyed by its SHA-256 hex digest: who it is and its role."""

    name: str
    role: DashboardRole


class Settings(BaseSettings):
    """Everything configurable, from ``PFD_<FIELD>`` variables; defaults run a fresh checkout."""

    model_config = SettingsConfigDict(env_prefix="PFD_", frozen=True, extra="ignore")

    # Where things live.
    var_dir: Path = Path("var")
    database_url: str = ""
    artifact_root: Path = Path()
    # The artifact store records name their files in. Empty: the artifact root itself (one
    # host, or a share every host mounts at the same path). s3://bucket/prefix: an
    # S3-compatible object store (AWS, MinIO, SeaweedFS) at s3_endpoint_url (empty: AWS);
    # each host writes under its own artifact root and publishes there, and reads other
    # hosts' artifacts through artifact_cache_dir (files named by checksum, trimmed to
    # artifact_cache_mb). Without an access key, boto3 finds credentials its own way.
    artifact_url: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")
    s3_ca_file: Path | None = None  # None: the system's CAs verify an https endpoint
    artifact_cache_dir: Path = Path()
    artifact_cache_mb: int = Field(10_240, ge=1)
    import_roots: tuple[Path, ...] = ()
    quality_roots: tuple[Path, ...] = ()  # where quality runs may look; default: the project
    # The hosts run_benchmarks may send requests to (api_url): a worker must not become a way
    # to probe the network it sits in.
    benchmark_api_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
    redis_url: str = "redis://127.0.0.1:6379/0"
    # A rediss:// URL verifies the server's certificate and host name against this CA bundle
    # (None: the system's CAs). An ACL user and password go in the URL (rediss://user:pw@host).
    redis_ca_file: Path | None = None
    # Message signing: every message body carries an HMAC-SHA256 under the first key; a
    # worker refuses, unread, one that is unsigned or signed by none of these keys. A list,
    # newest first, so keys rotate: add the new one in front everywhere, then drop the old
    # once its messages are drained. Empty: messages are plain JSON (a single host's default).
    # Every producer and worker of one broker must hold the same list.
    message_keys: list[SecretStr] = Field(default_factory=list)
    dashboard_url: str = "http://127.0.0.1:8088"  # notification links (pfd dashboard serves them)

    # Jobs, results and progress.
    result_ttl_s: int = Field(3600, ge=1)
    job_cache_ttl_s: int = Field(3600, ge=1)
    job_flush_interval_s: float = Field(0.5, gt=0)
    # Workers leave database writes to the recorder process (Procfile); set this where
    # no recorder runs (the single-process demo) to have workers write job rows themselves.
    workers_record_jobs: bool = False
    job_flush_batch: int = Field(500, ge=1)
    # A job that is not final is written once it has been dirty this long, so its rows
    # follow its progress at a bounded rate and short-lived states are never written.
    job_record_settle_s: float = Field(5.0, ge=0)
    worker_heartbeat_s: float = Field(2.0, gt=0)

    # Redis broker: a killed worker's messages come back once its heartbeat is this old, at
    # the next sweep of dead workers, which every worker process runs every sweep interval.
    # Dramatiq's 60 s heartbeat timeout and random maintenance pass took minutes.
    broker_heartbeat_timeout_ms: int = Field(15_000, ge=1_000)
    broker_sweep_interval_s: float = Field(1.0, gt=0)
    # How long a producer's send waits for an unreachable Redis (a worker's waits until it is back).
    broker_enqueue_wait_s: float = Field(30.0, ge=0)
    # A delivery started this many times without finishing (its worker died each time) is
    # dead-lettered on its next start (crash-guarded queues only).
    crash_guard_max_starts: int = Field(3, ge=1)

    # A producer that can read the database refuses, at send, a payload naming a dataset or
    # experiment that does not exist; set 0 on producers that have no route to it (the
    # worker still refuses such a job as soon as it starts).
    send_checks_records: bool = True

    # Logging.
    log_json: bool | None = None
    log_level: str = "INFO"

    # Maintenance (periodiq cron strings, minute hour day month weekday).
    schedule_reap_stale_jobs: str = "*/5 * * * *"
    schedule_clean_artifacts: str = "17 3 * * *"
    schedule_report_dead_letters: str = "*/15 * * * *"
    reaper_grace_s: int = Field(300, ge=1)
    temp_file_max_age_s: int = Field(6 * 3600, ge=0)
    run_retention_days: float = Field(30, gt=0)
    dead_letter_report_threshold: int = Field(10, ge=1)
    # The event outbox's sweep: events not relayed right after their commit (Redis was down)
    # once they are this old, and events relayed but still undelivered this long after
    # (their notify message was lost), at most this many relays each.
    schedule_relay_events: str = "* * * * *"
    outbox_settle_s: float = Field(10.0, ge=0)
    outbox_resend_after_s: float = Field(900.0, ge=0)
    outbox_max_relays: int = Field(10, ge=1)

    # Workers.
    generation_workers: int = Field(0, ge=0)
    # Training reads a dataset into memory when its windows fit this many MB, else a group of
    # records at a time within it (pipeline.training.stored); 0: always into memory.
    training_memory_mb: int = Field(8192, ge=0)
    # CPU placement (``pfd worker``): workers of the heavy queues (CRASH_GUARDED_QUEUES) yield
    # the CPU to the urgent ones. They run at this added niceness, under this Linux scheduling
    # policy ("batch": never preempts on wake-up; "idle": runs only when nothing else wants the
    # CPU; "other": the default policy), and off the urgent CPUs: a CPU list ("0", "0-1,4"),
    # "auto" (CPU 0 on hosts of 2 or more CPUs) or "" (no pinning).
    # bench/bench_latency.py measures each option; docs/operations.md has the figures.
    # The defaults (heavy workers SCHED_IDLE off CPU 0) are the only placement measured to keep
    # the urgent tail within 1.5x on 2 CPUs (docs/operations.md, "Urgent work under load").
    heavy_worker_nice: int = Field(0, ge=0, le=19)
    heavy_worker_policy: Literal["other", "batch", "idle"] = "idle"
    urgent_cpus: str = Field("auto", pattern=r"^(auto|\d+(-\d+)?(,\d+(-\d+)?)*)?$")
    # Dramatiq's Prometheus middleware in every worker process, writing to metrics_dir;
    # ``pfd metrics`` serves it with the cluster's queue depths and job outcomes.
    prometheus: bool = False
    metrics_dir: Path = Path()
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9191, ge=0, le=65535)  # 0: any free port (logged)

    # The web dashboard and API (pfd dashboard). Nothing is served without credentials:
    # users sign in with a password (Argon2 hash), services send a bearer token (its SHA-256
    # hex digest here); each has a role, viewer (reads) or operator (also acts). Session
    # cookies are signed with dashboard_secret_key; empty: a random key per process, so
    # sessions end when it restarts.
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(8088, ge=0, le=65535)
    dashboard_users: dict[str, DashboardUser] = Field(default_factory=dict)
    dashboard_tokens: dict[str, DashboardToken] = Field(default_factory=dict)
    dashboard_secret_key: SecretStr = SecretStr("")
    dashboard_session_max_age_s: int = Field(8 * 3600, ge=60)
    # Log files whose JSON lines a job's page shows (the lines naming it or its tree), e.g.
    # where a Procfile runner's output is collected; only the last few MiB of each are read.
    dashboard_log_files: tuple[Path, ...] = ()
    # A link to optuna-dashboard (run beside it on the same database) from each campaign page.
    optuna_dashboard_url: str = ""

    # Notifications. E-mail is off while smtp_host is empty, the webhook while webhook_url is.
    smtp_host: str = ""
    smtp_port: int = Field(0, ge=0, le=65535)  # 0: the TLS mode's usual port (25, 587, 465)
    smtp_tls: Literal["none", "starttls", "ssl"] = "starttls"
    smtp_user: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = "pfd@localhost"
    smtp_timeout_s: float = Field(10.0, gt=0)
    smtp_ca_file: Path | None = None  # extra CA bundle for an internal relay's certificate
    notify_email_to: str = ""  # the "default" user's address(es), comma-separated
    notify_user_emails: dict[str, str] = Field(default_factory=dict)  # other users, as JSON
    webhook_url: str = ""
    webhook_secret: SecretStr = SecretStr("")  # empty: requests are not signed
    webhook_timeout_s: float = Field(10.0, gt=0)
    notify_channel_failure_limit: int = Field(5, ge=1)  # failures in a row that pause a channel
    notify_channel_pause_s: float = Field(900.0, ge=0)  # then one attempt probes it again

    # MLflow (the optional ``mlflow`` extra). Empty: nothing is logged and mlflow is never
    # imported. Logging runs on a background thread that retries an unreachable server, so
    # training never waits on it; a job's end waits at most mlflow_flush_wait_s for its run.
    mlflow_tracking_uri: str = ""
    mlflow_experiment: str = Field("pfd", min_length=1)
    mlflow_http_timeout_s: float = Field(5.0, gt=0)
    mlflow_retry_max_s: float = Field(10.0, gt=0)
    mlflow_flush_wait_s: float = Field(10.0, ge=0)

    @model_validator(mode="after")
    def _keys_long_enough(self) -> Settings:
        short = [k for k, key in enumerate(self.message_keys) if len(key.get_secret_value()) < 32]
        if short:
            raise ValueError(f"message_keys: key(s) at position {short} are shorter than 32 characters "
                             "(use e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        return self

    @model_validator(mode="after")
    def _fill_derived_paths(self) -> Settings:
        var_dir = self.var_dir.expanduser().absolute()
        object.__setattr__(self, "var_dir", var_dir)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{var_dir / 'pfd.sqlite3'}")
        if self.artifact_root == Path():
            object.__setattr__(self, "artifact_root", var_dir / "artifacts")
        else:
            object.__setattr__(self, "artifact_root", self.artifact_root.expanduser().absolute())
        if self.artifact_cache_dir == Path():
            object.__setattr__(self, "artifact_cache_dir", var_dir / "artifact-cache")
        else:
            object.__setattr__(self, "artifact_cache_dir", self.artifact_cache_dir.expanduser().absolute())
        if self.metrics_dir == Path():
            object.__setattr__(self, "metrics_dir", var_dir / "prometheus")
        else:
            object.__setattr__(self, "metrics_dir", self.metrics_dir.expanduser().absolute())
        roots = self.import_roots or (var_dir / "imports", self.artifact_root)
        object.__setattr__(self, "import_roots", tuple(Path(r).expanduser().absolute() for r in roots))
        quality = self.quality_roots or (Path(__file__).resolve().parents[1],)
        object.__setattr__(self, "quality_roots", tuple(Path(r).expanduser().absolute() for r in quality))
        return self

    def masked(self, name: str) -> str:
        """Return a setting as text with any URL password masked."""
        return mask_secrets(str(getattr(self, name)))


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first use."""
    return Settings()

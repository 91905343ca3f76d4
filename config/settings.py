"""Settings read from the environment (and an optional ``.env`` file).

Every knob of the platform lives here, in one pydantic-settings class, so the
environment is validated once at start-up. A bad value becomes a single
:class:`core.errors.ConfigError` line naming the variable, never a traceback.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_home() -> Path:
    """The per-user data folder (``~/.local/share/agentry`` on Linux, via platformdirs)."""
    return platformdirs.user_data_path("agentry", appauthor=False)


class SslMode(StrEnum):
    require = "require"
    prefer = "prefer"
    disable = "disable"


class Settings(BaseSettings):
    """All configuration of an Agentry process.

    Field aliases are the environment variable names; they are what users see
    in error messages and in the README's configuration table.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # Only the aliases (AGENTRY_HOME, ...) are read: a bare HOME or PORT must not leak in.
        populate_by_name=False,
    )

    # --- database -----------------------------------------------------------
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    db_ssl: SslMode = Field(default=SslMode.prefer, alias="DB_SSL")
    db_max_connections: int = Field(default=10, ge=1, le=1000, alias="DB_MAX_CONNECTIONS")
    db_pool_idle_timeout: float = Field(default=30.0, gt=0, alias="DB_POOL_IDLE_TIMEOUT")
    db_connect_timeout: int = Field(default=5, ge=1, le=300, alias="DB_CONNECT_TIMEOUT")
    db_name: str = Field(
        default="agentry", pattern=r"^[a-z_][a-z0-9_]{0,62}$", alias="AGENTRY_DB_NAME"
    )

    # --- files ----------------------------------------------------------------
    # Per user, not per folder: every command finds the database `agentry up` uses,
    # wherever it is run from.
    home: Path = Field(default_factory=lambda: default_home(), alias="AGENTRY_HOME")
    # The deployment's own git repository: agents/, the mechanic's dynamic/schema and
    # migrations/versions. Created and seeded on first start (core/mechanic/deployment.py);
    # Agentry's source is never written at run time.
    project_dir: Path = Field(
        default_factory=lambda data: Path(data["home"]).expanduser() / "deployment",
        alias="AGENTRY_PROJECT_DIR",
    )
    # Benchmark data (CISI, DailyDialog) lives beside the checkout, never inside it.
    datasets_dir: Path = Field(
        default=PROJECT_ROOT.parent / "shared" / "datasets", alias="AGENTRY_DATASETS_DIR"
    )

    # --- embeddings and the HNSW index --------------------------------------
    embedding_provider: str = Field(
        default="local", pattern=r"^(local|openai)$", alias="AGENTRY_EMBEDDING_PROVIDER"
    )
    embedding_model: str = Field(default="all-MiniLM-L6-v2", alias="AGENTRY_EMBEDDING_MODEL")
    embedding_dims: int = Field(default=384, ge=1, le=16000, alias="AGENTRY_EMBEDDING_DIMS")
    # Chosen at a million rows (README, *A million vectors*): pgvector's 16 / 64 / 40 gave
    # recall@10 0.81-0.84; 24 / 128 / 100 gives 0.97 at p95 under 5 ms, for twice the build.
    hnsw_m: int = Field(default=24, ge=2, le=100, alias="AGENTRY_HNSW_M")
    hnsw_ef_construction: int = Field(
        default=128, ge=4, le=1000, alias="AGENTRY_HNSW_EF_CONSTRUCTION"
    )
    hnsw_ef_search: int = Field(default=100, ge=1, le=1000, alias="AGENTRY_HNSW_EF_SEARCH")
    # How vectors are stored and indexed: 4-byte floats (vector) or 2-byte (halfvec,
    # pgvector >= 0.7). `vector` by measurement (README, *Vector storage*): halfvec halves
    # the index but built 1.3-1.6x slower and lost recall on real queries.
    vector_type: str = Field(
        default="vector", pattern=r"^(vector|halfvec)$", alias="AGENTRY_VECTOR_TYPE"
    )
    # --- vector memory (issue 4) ------------------------------------------------
    # The local model's runtime: ONNX Runtime (exported once into AGENTRY_HOME/models)
    # or PyTorch. Same vectors; ONNX measured 1.35x faster on 2 cores.
    embedding_runtime: str = Field(
        default="onnx", pattern=r"^(onnx|torch)$", alias="AGENTRY_EMBEDDING_RUNTIME"
    )
    embedding_base_url: str | None = Field(default=None, alias="AGENTRY_EMBEDDING_BASE_URL")
    embedding_api_key: str | None = Field(default=None, alias="AGENTRY_EMBEDDING_API_KEY")
    # Larger batches sort better by length (less padding): 256 measured ~10% faster than 64.
    embedding_batch_size: int = Field(
        default=256, ge=1, le=2048, alias="AGENTRY_EMBEDDING_BATCH_SIZE"
    )
    chunk_size: int = Field(default=1000, ge=100, le=100_000, alias="AGENTRY_CHUNK_SIZE")
    chunk_overlap: int = Field(default=200, ge=0, le=50_000, alias="AGENTRY_CHUNK_OVERLAP")
    # Seconds between polls of the in-server embedding worker (0 disables it).
    embed_interval: float = Field(default=0.5, ge=0, le=3600, alias="AGENTRY_EMBED_INTERVAL")
    # Concurrent embedding transactions: one embeds while PostgreSQL inserts the
    # other's vectors into HNSW (core/memory/drain.py).
    embed_threads: int = Field(default=2, ge=1, le=32, alias="AGENTRY_EMBED_THREADS")
    search_exact_threshold: int = Field(
        default=10_000, ge=0, le=10_000_000, alias="AGENTRY_SEARCH_EXACT_THRESHOLD"
    )
    # Keyword top-k through the impact-ordered postings (core/memory/bm25.py); off: the
    # exact BM25 scan of every matching row. The budget bounds the postings one query reads
    # (past it, the best known parts are rescored: measured agreement in the README); the
    # hybrid budget is its keyword half's, read once and ranked by the parts read
    # (core/memory/bm25_ranks.py): it feeds ranks to the fusion.
    keyword_index: bool = Field(default=True, alias="AGENTRY_KEYWORD_INDEX")
    keyword_budget: int = Field(
        default=100_000, ge=100, le=100_000_000, alias="AGENTRY_KEYWORD_BUDGET"
    )
    hybrid_keyword_budget: int = Field(
        default=50_000, ge=100, le=100_000_000, alias="AGENTRY_HYBRID_KEYWORD_BUDGET"
    )
    # Freed memory each server or bench process keeps in its heap instead of handing it
    # back to the kernel (core/memory/heap.py): search's arrays then reuse warm pages.
    malloc_keep_mb: int = Field(default=64, ge=0, le=4096, alias="AGENTRY_MALLOC_KEEP_MB")
    # Decoded segment blocks kept per process (core/memory/block_cache.py); 0: off.
    keyword_block_cache_mb: int = Field(
        default=256, ge=0, le=65_536, alias="AGENTRY_KEYWORD_BLOCK_CACHE_MB"
    )
    # The segment of packed posting blocks (core/memory/keyword_segment.py) is rebuilt when
    # the tail of postings written since passes this share of it and the minimum.
    keyword_tail_fraction: float = Field(
        default=0.1, gt=0, le=10, alias="AGENTRY_KEYWORD_TAIL_FRACTION"
    )
    keyword_compact_min: int = Field(
        default=50_000, ge=0, le=100_000_000, alias="AGENTRY_KEYWORD_COMPACT_MIN"
    )
    rrf_k: int = Field(default=20, ge=1, le=10_000, alias="AGENTRY_RRF_K")
    # Candidates per mode before fusion (at least k). 50 by measurement (README, *Hybrid's
    # halves overlap*): CISI's hybrid top-10 is the same as at 100, and a rank past 50
    # adds at most 1/(rrf_k + 51) to a score, too little to reach a top-10.
    hybrid_depth: int = Field(default=50, ge=1, le=1000, alias="AGENTRY_HYBRID_DEPTH")
    # Hybrid's keyword half on a second pooled connection, beside the vector half.
    hybrid_concurrent: bool = Field(default=False, alias="AGENTRY_HYBRID_CONCURRENT")
    hybrid_vector_weight: float = Field(
        default=1.0, ge=0, le=100, alias="AGENTRY_HYBRID_VECTOR_WEIGHT"
    )
    hybrid_keyword_weight: float = Field(
        default=0.5, ge=0, le=100, alias="AGENTRY_HYBRID_KEYWORD_WEIGHT"
    )
    index_build_memory: str = Field(
        default="512MB", pattern=r"^[0-9]+(kB|MB|GB)$", alias="AGENTRY_INDEX_BUILD_MEMORY"
    )
    index_build_workers: int = Field(default=2, ge=0, le=64, alias="AGENTRY_INDEX_BUILD_WORKERS")
    # The embedded server only; a server of your own keeps its postgresql.conf.
    pg_shared_buffers: str = Field(
        default="auto", pattern=r"^(auto|[0-9]+(kB|MB|GB))$", alias="AGENTRY_PG_SHARED_BUFFERS"
    )

    # --- default LLM ------------------------------------------------------------
    llm_base_url: str | None = Field(default=None, alias="AGENTRY_LLM_BASE_URL")
    llm_model: str | None = Field(default=None, alias="AGENTRY_LLM_MODEL")
    llm_api_key: str | None = Field(default=None, alias="AGENTRY_LLM_API_KEY")

    # --- agent runtime (issue 3) -------------------------------------------------
    llm_timeout: float = Field(default=60.0, gt=0, le=3600, alias="AGENTRY_LLM_TIMEOUT")
    max_message_chars: int = Field(
        default=32000, ge=1, le=1_000_000, alias="AGENTRY_MAX_MESSAGE_CHARS"
    )
    checkpoint_keep: int = Field(default=20, ge=1, le=100000, alias="AGENTRY_CHECKPOINT_KEEP")
    prune_after_days: int = Field(default=30, ge=0, le=36500, alias="AGENTRY_PRUNE_AFTER_DAYS")

    # --- durable runs (issue 10) --------------------------------------------------
    # Worker threads per process that run queued runs (0: the process only serves).
    run_workers: int = Field(default=4, ge=0, le=256, alias="AGENTRY_RUN_WORKERS")
    # A run's holder renews its lease every third of this; a run whose holder died is
    # taken over by another worker once the lease expires.
    run_lease_seconds: float = Field(default=10.0, ge=1, le=3600, alias="AGENTRY_RUN_LEASE_SECONDS")

    # --- HTTP server ------------------------------------------------------------
    # Seconds an SSE stream (or a long wait) may stay silent before a keep-alive is sent.
    sse_keepalive: float = Field(default=15.0, gt=0, le=3600, alias="AGENTRY_SSE_KEEPALIVE")
    host: str = Field(default="127.0.0.1", alias="AGENTRY_HOST")
    port: int = Field(default=8000, ge=1, le=65535, alias="AGENTRY_PORT")

    # --- the mechanic (runtime schema changes) ------------------------------------
    # Git repository the mechanic commits to (default: AGENTRY_PROJECT_DIR) and its branch
    # (default: whatever is checked out). Pushed only to AGENTRY_GIT_REMOTE, never by default:
    # a repository's remotes are rarely ones the mechanic should push to.
    git_repo: Path | None = Field(default=None, alias="AGENTRY_GIT_REPO")
    git_branch: str | None = Field(default=None, alias="AGENTRY_GIT_BRANCH")
    git_remote: str | None = Field(default=None, alias="AGENTRY_GIT_REMOTE")
    backup_dir: Path | None = Field(default=None, alias="AGENTRY_BACKUP_DIR")
    # `agentry backup` keeps this many of its own backups (the mechanic's are kept apart).
    backup_keep: int = Field(default=7, ge=1, le=10_000, alias="AGENTRY_BACKUP_KEEP")
    mechanic_lock_wait: float = Field(
        default=30.0, gt=0, le=3600, alias="AGENTRY_MECHANIC_LOCK_WAIT"
    )
    mechanic_lock_timeout: float = Field(
        default=5.0, gt=0, le=600, alias="AGENTRY_MECHANIC_LOCK_TIMEOUT"
    )
    mechanic_statement_timeout: float = Field(
        default=120.0, gt=0, le=86400, alias="AGENTRY_MECHANIC_STATEMENT_TIMEOUT"
    )

    # --- crons and webhooks (issue 10) ----------------------------------------------
    # Seconds between a process's polls for due crons (0: this process fires none).
    cron_interval: float = Field(default=1.0, ge=0, le=3600, alias="AGENTRY_CRON_INTERVAL")
    # Key of the webhook signature (X-Agentry-Signature); unset: deliveries are unsigned.
    webhook_secret: str | None = Field(default=None, alias="AGENTRY_WEBHOOK_SECRET")
    # Hosts webhooks may be sent to, comma separated ("*.example.org" for subdomains).
    # Empty: none, so a run or cron naming a webhook is refused.
    webhook_allowed_hosts: str = Field(default="", alias="AGENTRY_WEBHOOK_ALLOWED_HOSTS")
    webhook_interval: float = Field(default=1.0, ge=0, le=3600, alias="AGENTRY_WEBHOOK_INTERVAL")
    webhook_timeout: float = Field(default=10.0, gt=0, le=300, alias="AGENTRY_WEBHOOK_TIMEOUT")
    webhook_max_attempts: int = Field(default=6, ge=1, le=100, alias="AGENTRY_WEBHOOK_MAX_ATTEMPTS")
    # First retry after this many seconds, doubling on every further failure.
    webhook_backoff: float = Field(default=2.0, gt=0, le=3600, alias="AGENTRY_WEBHOOK_BACKOFF")

    # --- encrypted credentials (issue 14) ----------------------------------------------
    # Fernet key (`agentry secrets new-key`) encrypting stored credentials; unset: the
    # credential routes answer 409. Keys replaced by a rotation stay readable while listed
    # in AGENTRY_SECRET_KEYS_OLD (comma separated) until `agentry secrets rotate` ran.
    secret_key: str | None = Field(default=None, alias="AGENTRY_SECRET_KEY", repr=False)
    secret_keys_old: str = Field(default="", alias="AGENTRY_SECRET_KEYS_OLD", repr=False)
    # --- operations: metrics, traces and limits (issue 14) ---------------------------
    # /metrics (Prometheus) and the HTTP metrics middleware; off: neither exists.
    metrics_enabled: bool = Field(default=True, alias="AGENTRY_METRICS_ENABLED")
    # Off: /metrics needs an admin key. On: anyone who reaches the port may scrape it.
    metrics_public: bool = Field(default=False, alias="AGENTRY_METRICS_PUBLIC")
    # OTLP/HTTP collector base URL (".../v1/traces" is appended); unset: no tracing, unless
    # the standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set.
    otlp_endpoint: str | None = Field(default=None, alias="AGENTRY_OTLP_ENDPOINT")
    # Token buckets per API key, per minute (burst = the same number); 0: unlimited.
    # Each user's own numbers (agentry users limits) win over these role defaults.
    rate_limits: bool = Field(default=True, alias="AGENTRY_RATE_LIMITS")
    rate_requests: int = Field(default=1200, ge=0, le=10_000_000, alias="AGENTRY_RATE_REQUESTS")
    rate_requests_admin: int = Field(
        default=6000, ge=0, le=10_000_000, alias="AGENTRY_RATE_REQUESTS_ADMIN"
    )
    rate_turns: int = Field(default=60, ge=0, le=10_000_000, alias="AGENTRY_RATE_TURNS")
    rate_turns_admin: int = Field(
        default=600, ge=0, le=10_000_000, alias="AGENTRY_RATE_TURNS_ADMIN"
    )
    # Wrong API keys a client address may send per minute before it is refused (429).
    rate_auth_failures: int = Field(
        default=30, ge=0, le=10_000_000, alias="AGENTRY_RATE_AUTH_FAILURES"
    )
    # Request bodies past this are refused (413) while they arrive, never read whole.
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, le=2**40, alias="AGENTRY_MAX_BODY_BYTES"
    )
    # POST /v1/import takes whole histories: its own, larger ceiling.
    max_import_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, le=2**40, alias="AGENTRY_MAX_IMPORT_BYTES"
    )

    @field_validator(
        "database_url",
        "llm_base_url",
        "llm_model",
        "llm_api_key",
        "embedding_base_url",
        "embedding_api_key",
        "git_remote",
        "webhook_secret",
        "secret_key",
        "otlp_endpoint",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # An exported-but-empty variable means "not configured", not "empty string".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in {"postgres", "postgresql", "postgresql+psycopg"}:
            raise ValueError("must be a PostgreSQL URL such as postgresql://user:pass@host:5432/db")
        return value

    @field_validator("secret_key", "secret_keys_old")
    @classmethod
    def _fernet_keys(cls, value: str | None) -> str | None:
        # Checked here so a mistyped key is one start-up line, not a failure on first use.
        for key in (value or "").split(","):
            if key.strip() and not _is_fernet_key(key.strip()):
                raise ValueError(
                    "must be a Fernet key (44 url-safe base64 characters, 32 bytes):"
                    " make one with `agentry secrets new-key`"
                )
        return value

    @field_validator("llm_base_url", "embedding_base_url", "otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _chunk_overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"AGENTRY_CHUNK_OVERLAP ({self.chunk_overlap}) must be smaller than "
                f"AGENTRY_CHUNK_SIZE ({self.chunk_size})"
            )
        return self

    @property
    def home_dir(self) -> Path:
        """``AGENTRY_HOME`` as an absolute path (created on demand by its users)."""
        return self.home.expanduser().resolve()

    @property
    def git_repo_dir(self) -> Path:
        """The repository the mechanic commits to (``AGENTRY_GIT_REPO`` or the project)."""
        return (self.git_repo or self.project_dir).expanduser().resolve()

    @property
    def backup_path(self) -> Path:
        """Where ``pg_dump`` backups go (``AGENTRY_BACKUP_DIR`` or ``AGENTRY_HOME/backups``)."""
        return (self.backup_dir or self.home_dir / "backups").expanduser().resolve()

    @property
    def webhook_hosts(self) -> frozenset[str]:
        """``AGENTRY_WEBHOOK_ALLOWED_HOSTS`` as lower-case host names (empty: none)."""
        return frozenset(
            h.strip().lower() for h in self.webhook_allowed_hosts.split(",") if h.strip()
        )

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None


def _is_fernet_key(key: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(key.encode())) == 32
    except (ValueError, binascii.Error):
        return False


def _describe(error: ValidationError) -> str:
    """Turn pydantic's report into one line that names the environment variable."""
    parts = []
    for item in error.errors():
        name = ".".join(str(p) for p in item["loc"]) or "settings"
        given = item.get("input")
        shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
        if "KEY" in name.upper() or "SECRET" in name.upper():
            shown = ""  # a mistyped secret must not land in a log
        parts.append(f"{name}: {item['msg']}{shown}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings from the environment.

    Args:
        overrides: values that win over the environment (tests, CLI flags).

    Returns:
        The validated settings.

    Raises:
        ConfigError: a variable has a bad value; the message names it.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI's ``--env`` handling)."""
    get_settings.cache_clear()

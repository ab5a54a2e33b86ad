"""`crossview hub [--config hub.yaml] [key=value ...]`: serve one hub replica until SIGINT/SIGTERM
(and `crossview hub export-training DIR`: `export_training_command`, the confirmed sightings as training data).

Configuration (`HubConfig`: YAML file + ``key=value`` overrides) is read here and nowhere else::

    data_dir: /var/lib/crossview-hub       # crops, and hub.db unless `database` is set
    database: postgresql://hub@db/crossview # optional: SQLite path or PostgreSQL URL
    host: 0.0.0.0
    port: 7443
    judge: reid                             # models.verify judge name
    judge_options: {model: Qwen/Qwen2-VL-2B-Instruct, adapter: /srv/judge-lora}  # that judge's keyword
                                            # arguments (e.g. the transformers judge's LoRA adapter from
                                            # `crossview train judge`); unknown ones are refused at start
    judge_batching: {max_batch_pairs: 64, max_wait_ms: 3}  # optional (absent or {}: off): pack concurrent
                                            # short lists' pairs into shared judge calls (a GPU judge's
                                            # throughput); also max_queue_pairs, put_timeout_s (JudgeBatcher)
    allow_new_identities: false             # true: a person nobody in the gallery resembles (an edge's
                                            # send_unmatched) gets an automatic identity; false: an
                                            # "unknown" sighting, promotable to an identity
    confirm_p_same: 0.5                     # the decision line: confirm the most likely candidate from
                                            # this fused P(same) (0..1, calibrated; README "Scores")
    tls_cert: hub.pem                       # TLS (both or neither); tls_client_ca enables mTLS
    tls_key: hub.key
    create_tokens: [edge-1, edge-2]         # issue a token per edge id at start-up ...
    tokens_file: tokens.txt                 # ... written here (mode 0600) instead of printed
    heartbeat_timeout_s: 30                 # an edge silent this long is shown and treated as disconnected
    api_host: 127.0.0.1                     # the operators' REST API and web UI
    api_port: 8080                          # -1: no API
    audit_retention_days: 365               # the audit trail keeps lines this long (none: forever)
    admin_user: admin                       # an operator created (or its password reset) at start-up; an
                                            # admin when it is new or no enabled admin is left
    admin_password_file: /etc/crossview/admin-password  # its first line; or env CROSSVIEW_ADMIN_PASSWORD;
                                            # neither: a new operator gets a random password, printed once
    api_allowed_origins: [https://hub.example:8443]  # pages (besides the hub's own) that may send changes

`admin_password:` is still read (from the YAML file), but given as ``admin_password=...`` on the command
line it shows in `ps` to every user of the machine: a warning says so (use the file or the variable).

Tokens are printed (or written) once, ``EDGE_ID TOKEN`` per line; only their hashes are stored. A
generated operator password is printed once as ``operator USER PASSWORD``. Once serving, the line
``api on http://HOST:PORT`` (unless the API is off) and then ``serving on HOST:PORT`` go to stdout.
SIGINT or SIGTERM stop the REST API, switch the health service to NOT_SERVING, end the sessions and
stop the server; the exit status is then 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from models.errors import CrossviewError
from models.scores import DEFAULT_CONFIRM_P_SAME, check_p_same

if TYPE_CHECKING:
    from cloud.api import ApiServer
    from cloud.hub import Hub
    from cloud.operators import OperatorAuth

log = logging.getLogger(__name__)


@dataclass
class HubConfig:
    """Settings of `crossview hub`."""

    data_dir: str = "hub-data"
    database: str | None = None
    host: str = "127.0.0.1"
    port: int = 50051
    judge: str = "reid"
    judge_options: dict[str, Any] = field(default_factory=dict)
    judge_batching: dict[str, Any] = field(default_factory=dict)
    allow_new_identities: bool = False
    confirm_p_same: float = DEFAULT_CONFIRM_P_SAME
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    require_client_cert: bool = False
    create_tokens: list[str] = field(default_factory=list)
    tokens_file: str | None = None
    workers: int = 2
    heartbeat_timeout_s: float = 30.0  # an edge silent this long is marked disconnected (3 heartbeat intervals)
    log_level: str = "INFO"
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    admin_user: str = "admin"
    admin_password: str | None = None
    audit_retention_days: float | None = 365.0
    admin_password_file: str | None = None
    api_allowed_origins: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_p_same("confirm_p_same", self.confirm_p_same)
        if self.audit_retention_days is not None and not self.audit_retention_days > 0:
            raise ValueError(f"audit_retention_days: expected > 0 (none: keep forever), "
                             f"got {self.audit_retention_days}")
        if not self.heartbeat_timeout_s > 0:
            raise ValueError(f"heartbeat_timeout_s: expected > 0, got {self.heartbeat_timeout_s}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: expected 0..65535 (0: any free port), got {self.port}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key: expected both or neither")
        if (self.tls_client_ca or self.require_client_cert) and self.tls_cert is None:
            raise ValueError("tls_client_ca / require_client_cert: expected tls_cert and tls_key too")
        if self.require_client_cert and self.tls_client_ca is None:
            raise ValueError("require_client_cert: expected tls_client_ca to verify client certificates with")
        if self.workers < 1:
            raise ValueError(f"workers: expected >= 1, got {self.workers}")
        if not -1 <= self.api_port <= 65535:
            raise ValueError(f"api_port: expected 0..65535 (0: any free port; -1: no API), got {self.api_port}")


def _tls(cfg: HubConfig):  # -> cloud.server.TlsConfig | None
    if cfg.tls_cert is None or cfg.tls_key is None:
        return None
    from cloud.server import TlsConfig

    for name in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(cfg, name)
        if path is not None and not Path(path).is_file():
            raise CrossviewError(f"{name}: file {path} does not exist")
    return TlsConfig(cert=Path(cfg.tls_cert), key=Path(cfg.tls_key),
                     client_ca=Path(cfg.tls_client_ca) if cfg.tls_client_ca else None,
                     require_client_cert=cfg.require_client_cert)


def _issue_tokens(hub, cfg: HubConfig, out: TextIO) -> None:
    if not cfg.create_tokens:
        return
    lines = [f"{edge_id} {hub.auth.create_token(edge_id).token}\n" for edge_id in cfg.create_tokens]
    if cfg.tokens_file:
        path = Path(cfg.tokens_file)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(lines)
        out.write(f"wrote {len(lines)} edge token(s) to {path}\n")
    else:
        out.writelines(f"token {line}" for line in lines)
    out.flush()


def _password_from_file(path: str | None) -> str | None:
    """The first line of `path` (None: no file configured); a missing or empty file is a CrossviewError."""
    if path is None:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CrossviewError(f"admin_password_file: cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
                             ) from None
    if not lines or not lines[0].strip():
        raise CrossviewError(f"admin_password_file: expected a password on the first line of {path}, got none")
    return lines[0].strip()


def warn_password_on_command_line(overrides: list[str]) -> None:
    """A warning when ``admin_password=`` is among the command-line overrides (`ps` shows it)."""
    if any(item.strip().startswith("admin_password=") for item in overrides):
        log.warning("admin_password given on the command line is visible to every user of this machine (ps); "
                    "use admin_password_file=PATH or the CROSSVIEW_ADMIN_PASSWORD environment variable")


def _operators(hub: Hub, cfg: HubConfig, out: TextIO) -> OperatorAuth:
    """Create the admin operator, or reset its password when one is configured."""
    import secrets

    from cloud.audit import AuditLog
    from cloud.operators import OperatorAuth

    audit = AuditLog(hub.store, retention_days=cfg.audit_retention_days)
    hub.sessions.add_housekeeping(audit.sweep_if_due)
    operators = OperatorAuth(hub.store, audit=audit)
    password = cfg.admin_password or _password_from_file(cfg.admin_password_file) \
        or os.environ.get("CROSSVIEW_ADMIN_PASSWORD") or None
    if password is not None:
        operators.create_operator(cfg.admin_user, password)
    elif hub.store.get_operator(cfg.admin_user) is None:
        password = secrets.token_urlsafe(12)
        operators.create_operator(cfg.admin_user, password)
        out.write(f"operator {cfg.admin_user} {password}\n")
        out.flush()
    if not any(o.role == "admin" and not o.disabled for o in operators.list_operators()):
        operators.set_role(cfg.admin_user, "admin")  # a hub always has an enabled admin
        operators.set_disabled(cfg.admin_user, False)
    return operators


async def _start_api(hub: Hub, cfg: HubConfig, out: TextIO) -> ApiServer | None:
    if cfg.api_port < 0:
        return None
    operators = _operators(hub, cfg, out)
    try:
        from cloud.api import ApiServer, create_app
    except ImportError as exc:
        raise CrossviewError(f"the REST API needs FastAPI and uvicorn: pip install 'crossview[api]' ({exc}); "
                             "or set api_port=-1") from exc
    api = ApiServer(create_app(hub, operators, allowed_origins=cfg.api_allowed_origins), host=cfg.api_host,
                    port=cfg.api_port)
    await api.start()
    out.write(f"api on {api.url}\n")
    out.flush()
    return api


def create_hub(cfg: HubConfig) -> Hub:
    """The hub the configuration describes (not started)."""
    from cloud.hub import Hub
    from cloud.sessions import SessionLimits
    from cloud.verification import DecisionPolicy

    policy = DecisionPolicy(allow_new_identities=cfg.allow_new_identities, confirm_p_same=cfg.confirm_p_same,
                            new_below_p_same=min(DecisionPolicy.new_below_p_same, cfg.confirm_p_same))
    return Hub.create(data_dir=cfg.data_dir, database=cfg.database, judge=cfg.judge, judge_kwargs=cfg.judge_options,
                      judge_batching=cfg.judge_batching or None, policy=policy,
                      workers=cfg.workers, limits=SessionLimits(heartbeat_timeout_s=cfg.heartbeat_timeout_s))


async def serve(cfg: HubConfig, out: TextIO = sys.stdout) -> None:
    """Create the hub, issue the tokens, serve edges and the API until SIGINT/SIGTERM, stop gracefully."""
    from cloud.file_limits import raise_open_file_limit

    raise_open_file_limit()  # edges' streams and REST connections each hold a file
    tls = _tls(cfg)
    hub = create_hub(cfg)
    try:
        _issue_tokens(hub, cfg, out)
        port = await hub.start(port=cfg.port, host=cfg.host, tls=tls)
        api = await _start_api(hub, cfg, out)
    except BaseException:
        await hub.stop()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        out.write(f"serving on {cfg.host}:{port}\n")
        out.flush()
        await stop.wait()
        log.info("signal received: NOT_SERVING, ending sessions, stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if api is not None:
            await api.stop()
        await hub.stop()


def hub_command(config: Path | None, overrides: list[str]) -> int:
    """Load the configuration and serve; the exit status."""
    from crossview.config import load_config

    cfg = load_config(HubConfig, config, overrides)
    logging.basicConfig(level=cfg.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warn_password_on_command_line(overrides)
    asyncio.run(serve(cfg))
    return 0


def parse_since(text: str | None) -> float | None:
    """`--since` as Unix seconds: an ISO 8601 date or time (UTC unless it names a zone)."""
    if text is None:
        return None
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CrossviewError(f"--since: expected an ISO time such as 2026-12-01T08:00:00Z, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def export_training_command(out: Path, config: Path | None, overrides: list[str], *, since: str | None = None,
                            force: bool = False, stdout: TextIO = sys.stdout) -> int:
    """`crossview hub export-training DIR`: the hub's confirmed sightings as a Market-1501 training folder.

    The store is the one `crossview hub` with the same configuration uses (``data_dir``, ``database``)."""
    from cloud.crops import CropFiles
    from cloud.store import open_store
    from cloud.training_export import export_training
    from crossview.config import load_config

    cfg = load_config(HubConfig, config, overrides)
    since_s = parse_since(since)
    data_dir = Path(cfg.data_dir)
    database = cfg.database or data_dir / "hub.db"
    if cfg.database is None and not Path(database).is_file():
        raise CrossviewError(f"no hub store at {database}; pass the hub's data_dir= (or --config) it serves with")
    store = open_store(database)
    try:
        summary = export_training(store, CropFiles(data_dir / "crops"), out, since_s=since_s, force=force)
    finally:
        store.close()
    for line in summary.lines():
        stdout.write(line + "\n")
    return 0

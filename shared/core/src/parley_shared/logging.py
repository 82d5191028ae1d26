"""One logging setup for every process: structlog, JSON off a terminal, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"(token|secret|signature|password|authorization|api[_-]?key|access[_-]?key|cookie|credential)",
    re.IGNORECASE,
)
# Values that look like secrets wherever they appear inside a string.
_SECRET_VALUE = re.compile(
    r"(sha256=[0-9A-Za-z+/=]{16,}"  # webhook signatures
    r"|Bearer\s+[A-Za-z0-9._~+/=-]{8,}"  # bearer tokens
    r"|EAA[A-Za-z0-9]{20,}"  # Meta access tokens
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # JWTs
    r"|(?<=[?&])([\w.]*token|[\w.]*secret|code)=[^&\s\"']+)"  # any *token or *secret parameter
)


def redact_value(value: Any) -> Any:
    """Redact secrets inside a value: whole values under secret-looking keys, patterns in text."""
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value)
    if isinstance(value, bytes):
        return redact_value(value.decode("utf-8", errors="replace"))
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: no token, secret or signature leaves the process in a log line."""
    for key in list(event_dict):
        if _SECRET_KEY.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = redact_value(event_dict[key])
    return event_dict


def configure_logging(service: str, level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and the standard library (uvicorn, aiokafka, faststream) alike."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "pymongo", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> Any:
    """A structlog logger; bind tenant_id, channel_id, conversation_id, event_id as known."""
    return structlog.stdlib.get_logger(name)

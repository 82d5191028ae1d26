"""Parley's provider sandbox: Meta's Graph API and the X API played by a local HTTP server.

For development and tests only: the production image does not contain it (the workspace lists it
as a development dependency, and the image installs none of those).
"""

from parley_sandbox.app import (
    DEFAULT_META_PERMISSIONS,
    DEFAULT_PAGE_TASKS,
    DEFAULT_X_SCOPES,
    Fault,
    SandboxState,
    SentRequest,
    build_parser,
    create_sandbox_app,
    main,
    serve_sandbox,
    state_from_args,
)

__all__ = [
    "DEFAULT_META_PERMISSIONS",
    "DEFAULT_PAGE_TASKS",
    "DEFAULT_X_SCOPES",
    "Fault",
    "SandboxState",
    "SentRequest",
    "build_parser",
    "create_sandbox_app",
    "main",
    "serve_sandbox",
    "state_from_args",
]

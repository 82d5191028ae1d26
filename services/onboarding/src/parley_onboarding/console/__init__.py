"""The admin console: server-rendered pages over onboarding's service, under ``/console/``.

Every page is a view of what the API already offers (the same service calls, the same domain
rules); plain HTML forms post and redirect (docs/console.md).
"""

from parley_onboarding.console.app import create_console

__all__ = ["create_console"]

"""Everything Parley knows about its providers, one package each (``meta``, ``whatsapp``, ``x``).

Only httpx, parley-events and one Prometheus gauge (:mod:`parley_providers.metrics`): no Kafka,
no store. Services reach a provider through
:mod:`parley_providers.registry` and the protocols of :mod:`parley_providers.base`; what every
provider shares (the error kinds, the token type) is re-exported here.
"""

from parley_providers import registry
from parley_providers.errors import ErrorKind, ProviderError, classify_status
from parley_providers.oauth import UserToken

__all__ = ["ErrorKind", "ProviderError", "UserToken", "classify_status", "registry"]

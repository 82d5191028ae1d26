"""Everything Parley knows about its providers, one package each (``meta``, ``x``).

Only httpx: no Kafka, no store. The names most callers need are re-exported here.
"""

from parley_providers.errors import ErrorKind, ProviderError, classify_status
from parley_providers.meta.client import GraphClient, PageInfo, WhatsAppPhoneNumber
from parley_providers.meta.errors import classify_graph_error, graph_error, meta_error
from parley_providers.oauth import UserToken
from parley_providers.x.client import XClient, XUser
from parley_providers.x.errors import classify_x_error, x_error

__all__ = [
    "ErrorKind",
    "GraphClient",
    "PageInfo",
    "ProviderError",
    "UserToken",
    "WhatsAppPhoneNumber",
    "XClient",
    "XUser",
    "classify_graph_error",
    "classify_status",
    "classify_x_error",
    "graph_error",
    "meta_error",
    "x_error",
]

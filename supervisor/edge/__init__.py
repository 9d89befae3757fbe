"""The gRPC edge: grpclib on asyncio (inside trio-asyncio), handlers, error mapping, serving.

The service's requests run on asyncio here and nowhere else (``edge._server`` starts the
loop's server; the health probe in ``cli`` and the flyte-sdk adapter in ``connectors``
use asyncio of their own). Sits on ``service`` (it calls a ``ConnectorService``),
``wire`` and ``observe``. Every use of grpclib's private parts is in ``_grpclib``.
"""

from ._edge import DEFAULT_MAX_MESSAGE_BYTES as DEFAULT_MAX_MESSAGE_BYTES
from ._edge import LIVENESS_SERVICE as LIVENESS_SERVICE
from ._edge import Codec as Codec
from ._edge import Edge as Edge
from ._grpclib import BatchingTransport as BatchingTransport
from ._messages import MAX_MESSAGE_CHARS as MAX_MESSAGE_CHARS
from ._messages import bounded as bounded
from ._server import Listening as Listening
from ._server import serve_grpc as serve_grpc
from ._tls import server_tls as server_tls

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "LIVENESS_SERVICE",
    "MAX_MESSAGE_CHARS",
    "BatchingTransport",
    "Codec",
    "Edge",
    "Listening",
    "bounded",
    "serve_grpc",
    "server_tls",
]

"""The gRPC edge: grpclib on asyncio (inside trio-asyncio), handlers, error mapping, serving.

The service's requests run on asyncio here and nowhere else (``edge._server`` starts the
loop's server; the health probe in ``cli`` and the flyte-sdk adapter in ``connectors``
use asyncio of their own). Sits on ``service`` (it calls a ``ConnectorService``) and
``observe``.
"""

from ._edge import Codec as Codec
from ._edge import Edge as Edge
from ._server import Listening as Listening
from ._server import serve_grpc as serve_grpc

__all__ = [
    "Codec",
    "Edge",
    "Listening",
    "serve_grpc",
]

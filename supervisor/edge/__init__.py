"""The gRPC edge: grpclib on asyncio (inside trio-asyncio), handlers, error mapping, serving.

The only package that runs asyncio code for requests. Sits on ``service`` (it calls a
``ConnectorService``) and ``observe``.
"""

from ._edge import Codec as Codec
from ._edge import Edge as Edge
from ._server import Listening as Listening
from ._server import serve_grpc as serve_grpc

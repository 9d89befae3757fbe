"""TLS (and mutual TLS) on the gRPC port: an ``ssl.SSLContext`` for grpclib's ``Server.start``.

Flyte's connector client connects with ``insecure: false`` and, optionally, its own
certificate; gRPC over TLS needs ALPN ``h2`` and TLS 1.2 or later.
"""

from __future__ import annotations

import ssl

__all__ = ["server_tls"]


def server_tls(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A server context for ``cert``/``key`` (PEM files); with ``client_ca``, clients must
    present a certificate it signed (mutual TLS).

    Errors: OSError or ssl.SSLError naming what does not load.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context

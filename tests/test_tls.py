"""TLS and mutual TLS on the gRPC port, with the grpcio client and certificates made here."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector import service_pb2_grpc

from tests.support.server import ServerProcess

SAMPLE_ARGS = ["--entry-points", "false", "--modules", "tests.support.sample_connectors"]
CALL_TIMEOUT = 10.0


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name if issuer is None else issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(key if issuer is None else issuer[1], hashes.SHA256())


class Pki:
    """A CA, a server certificate and a client certificate, written as PEM files."""

    def __init__(self, directory: Path) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("test CA", ca_key)
        self.files: dict[str, Path] = {}
        self.pem: dict[str, bytes] = {"ca": ca.public_bytes(serialization.Encoding.PEM)}
        for who in ("server", "client"):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _certificate(who, key, (ca, ca_key))
            self.pem[f"{who}-key"] = _pem(key)
            self.pem[f"{who}-cert"] = cert.public_bytes(serialization.Encoding.PEM)
        for name, data in self.pem.items():
            path = directory / f"{name}.pem"
            path.write_bytes(data)
            self.files[name] = path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def tls_args(pki: Pki, *, mutual: bool) -> list[str]:
    args = ["--tls-cert", str(pki.files["server-cert"]), "--tls-key", str(pki.files["server-key"])]
    if mutual:
        args += ["--tls-client-ca", str(pki.files["ca"])]
    return args


def list_connectors(channel: grpc.Channel) -> pb.ListConnectorsResponse:
    stub = service_pb2_grpc.ConnectorMetadataServiceStub(channel)
    return stub.ListConnectors(pb.ListConnectorsRequest(), timeout=CALL_TIMEOUT)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    made: list[ServerProcess] = []
    yield made
    for process in made:
        process.close()


def start(made: list[ServerProcess], args: list[str], log_dir: Path) -> ServerProcess:
    process = ServerProcess([*SAMPLE_ARGS, *args], log_dir=log_dir, host="127.0.0.1")
    made.append(process)
    process.start()
    return process


def test_tls_serves_a_client_that_trusts_the_ca_and_refuses_plaintext(
    pki: Pki, serve: list[ServerProcess], tmp_path: Path
) -> None:
    server = start(serve, tls_args(pki, mutual=False), tmp_path)
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.pem["ca"])
    with grpc.secure_channel(server.address, credentials) as channel:
        assert list_connectors(channel).connectors
    with grpc.insecure_channel(server.address) as channel, pytest.raises(grpc.RpcError) as error:
        list_connectors(channel)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "Traceback" not in server.stderr_text()


def test_mutual_tls_needs_a_client_certificate_from_the_ca(
    pki: Pki, serve: list[ServerProcess], tmp_path: Path
) -> None:
    server = start(serve, tls_args(pki, mutual=True), tmp_path)
    with_cert = grpc.ssl_channel_credentials(
        root_certificates=pki.pem["ca"],
        private_key=pki.pem["client-key"],
        certificate_chain=pki.pem["client-cert"],
    )
    with grpc.secure_channel(server.address, with_cert) as channel:
        assert list_connectors(channel).connectors
    without = grpc.ssl_channel_credentials(root_certificates=pki.pem["ca"])
    with grpc.secure_channel(server.address, without) as channel, pytest.raises(grpc.RpcError):
        list_connectors(channel)


def test_a_key_without_a_certificate_is_one_line_and_exit_2(
    pki: Pki, serve: list[ServerProcess], tmp_path: Path
) -> None:
    process = ServerProcess(
        [*SAMPLE_ARGS, "--tls-key", str(pki.files["server-key"])], log_dir=tmp_path
    )
    serve.append(process)
    process.spawn()
    assert process.wait(timeout=30) == 2
    assert "error: TLS: give both --tls-cert and --tls-key" in process.stderr_text()
    assert "Traceback" not in process.stderr_text()

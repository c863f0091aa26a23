"""A local HTTPS receiver for webhook tests: a certificate authority and a server certificate for
127.0.0.1 made on the spot, and a threaded server that records every POST and answers the statuses it is
told to, in turn."""

import datetime
import hashlib
import hmac
import ipaddress
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Tls:
    ca: Path  # what the sender trusts (FOXGATE_WEBHOOK_CA_BUNDLE)
    cert: Path
    key: Path


def tls_files(folder: Path) -> Tls:
    """A CA, and a certificate it signed for 127.0.0.1, written to `folder`."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key, issuer_name, issuer_key, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook test CA")])
    ca = certificate("webhook test CA", ca_key, ca_name, ca_key, ca=True)
    server = certificate("127.0.0.1", server_key, ca_name, ca_key, ca=False)
    tls = Tls(ca=folder / "ca.pem", cert=folder / "server.pem", key=folder / "server-key.pem")
    tls.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return tls


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def signed_by(self, secret: str) -> bool:
        """As a receiver checks it: `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`, the
        timestamp also in X-FoxGate-Timestamp."""
        signed = dict(part.split("=", 1) for part in self.headers["X-FoxGate-Signature"].split(","))
        timestamp = self.headers["X-FoxGate-Timestamp"]
        expected = hmac.new(
            secret.encode(), timestamp.encode() + b"." + self.body, hashlib.sha256
        ).hexdigest()
        return signed["t"] == timestamp and hmac.compare_digest(signed["v1"], expected)

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTPS server on 127.0.0.1; `statuses` are answered in turn, then 200."""

    tls: Tls
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def __enter__(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    receiver.received.append(Received(dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.cert, self.tls.key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/hooks/foxgate"

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        """The first `count` requests, once they have arrived."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"{len(self.received)} of {count} webhook requests arrived")
            return list(self.received)

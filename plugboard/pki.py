"""`plugboard pki init`: the keys and certificates of the engine -> agent link.

One private CA signs two leaf certificates: the engine's client certificate (clientAuth) and the
agent's server certificate (serverAuth, with the host's names and addresses as SANs). The agent
accepts only clients the CA signed; the engine accepts only an agent the CA signed. Keys are
written 0600 and never leave the directory; an existing file is kept unless `--force`, so running
it again (as `make run` does) changes nothing.

Made with the `cryptography` library (no openssl command line): ECDSA P-256 keys, SHA-256. It is
imported when keys are made, not with this module: `plugboard agent serve` builds the same command
line on a host that only runs the agent and has no `cryptography`.
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

DEFAULT_DIR = Path("/etc/pki/plugboard")
CA_DAYS = 3650
LEAF_DAYS = 825   # what browsers and most CAs accept as a leaf's longest life


@dataclass(frozen=True)
class Files:
    """The file names `init` writes in its directory; the engine and agent configs point at them."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def engine_cert(self) -> Path:
        return self.dir / "engine.pem"

    @property
    def engine_key(self) -> Path:
        return self.dir / "engine.key"

    @property
    def agent_cert(self) -> Path:
        return self.dir / "agent.pem"

    @property
    def agent_key(self) -> Path:
        return self.dir / "agent.key"

    def all(self) -> tuple[Path, ...]:
        return (self.ca_cert, self.ca_key, self.engine_cert, self.engine_key, self.agent_cert, self.agent_key)

    def complete(self) -> bool:
        return all(p.is_file() for p in self.all())


def default_names() -> list[str]:
    """The agent's SANs when none are given: this host's names, loopback by address and name."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    fqdn = socket.getfqdn()
    if fqdn not in names:
        names.append(fqdn)
    return names


def _key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    # Created 0600 from the start: never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    from cryptography.hazmat.primitives import serialization
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(path, 0o644)


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    from cryptography import x509
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(n.strip() for n in names if n.strip()):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _name(cn: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Plugboard"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    from cryptography import x509
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))   # tolerate a little clock skew
            .not_valid_after(now + datetime.timedelta(days=days)))


def make_ca(cn: str = "Plugboard CA", days: int = CA_DAYS) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    key = _key()
    cert = (_builder(_name(cn), _name(cn), key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_leaf(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, cn: str, *, server: bool,
              names: list[str] | None = None, days: int = LEAF_DAYS
              ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A certificate for a TLS server (`server`, with `names` as SANs) or client, signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID
    key = _key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (_builder(_name(cn), ca_cert.subject, key.public_key(), days)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if names:
        builder = builder.add_extension(_san(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def init(directory: Path, names: list[str] | None = None, *, force: bool = False) -> Files:
    """Make the CA, the engine's client certificate and the agent's server certificate in
    `directory` (created 0700). A complete set already there is kept, unless `force`."""
    files = Files(Path(directory))
    if files.complete() and not force:
        return files
    files.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key, ca_cert = make_ca()
    engine_key, engine_cert = make_leaf(ca_key, ca_cert, "plugboard-engine", server=False)
    agent_names = names or default_names()
    agent_key, agent_cert = make_leaf(ca_key, ca_cert, agent_names[0], server=True, names=agent_names)
    for key_path, key in ((files.ca_key, ca_key), (files.engine_key, engine_key), (files.agent_key, agent_key)):
        _write_key(key_path, key)
    for cert_path, cert in ((files.ca_cert, ca_cert), (files.engine_cert, engine_cert),
                            (files.agent_cert, agent_cert)):
        _write_cert(cert_path, cert)
    return files


def _init_command(args: argparse.Namespace) -> int:
    names = [n for part in args.name or [] for n in part.split(",")] or None
    files = Files(args.dir)
    existed = files.complete()
    init(args.dir, names, force=args.force)
    verb = "kept" if existed and not args.force else "wrote"
    print(f"{verb} {files.dir}: ca.pem, engine.pem/.key (client), agent.pem/.key (server); keys are 0600")
    print(f"agent.toml:  [tls] cert = \"{files.agent_cert}\"  key = \"{files.agent_key}\"  ca = \"{files.ca_cert}\"")
    print(f"engine.toml: [tls] cert = \"{files.engine_cert}\"  key = \"{files.engine_key}\"  ca = \"{files.ca_cert}\"")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`plugboard pki init`; called by plugboard.cli, which imports this module only when asked."""
    pki = sub.add_parser("pki", help="keys and certificates of the engine -> agent link")
    actions = pki.add_subparsers(dest="action", required=True)
    init_p = actions.add_parser("init", help="make a CA, the engine's client and the agent's server certificate")
    init_p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"where to write them (default {DEFAULT_DIR})")
    init_p.add_argument("--name", action="append", metavar="NAME[,NAME...]",
                        help="the agent's host names and addresses (SANs); default: this host's names, "
                             "localhost, 127.0.0.1, ::1")
    init_p.add_argument("--force", action="store_true", help="replace an existing set")
    init_p.set_defaults(func=_init_command)

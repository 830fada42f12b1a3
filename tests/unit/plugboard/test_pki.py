"""`plugboard pki init`: a CA, the engine's client and the agent's server certificate, keys 0600."""
from __future__ import annotations

import ipaddress
import stat

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from plugboard import cli, pki


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_makes_a_ca_and_two_leaves_it_signed(tmp_path):
    files = pki.init(tmp_path / "pki", ["agent.example", "10.0.0.5"])
    ca, engine, agent = _cert(files.ca_cert), _cert(files.engine_cert), _cert(files.agent_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for leaf in (engine, agent):
        leaf.verify_directly_issued_by(ca)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert list(engine.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert list(agent.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.SERVER_AUTH]
    san = agent.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["agent.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]


def test_keys_are_0600_and_the_directory_0700(tmp_path):
    files = pki.init(tmp_path / "pki")
    assert stat.S_IMODE(files.dir.stat().st_mode) == 0o700
    for key in (files.ca_key, files.engine_key, files.agent_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_default_sans_cover_loopback(tmp_path):
    san = _cert(pki.init(tmp_path / "pki").agent_cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)


def test_init_again_keeps_the_set_unless_forced(tmp_path):
    files = pki.init(tmp_path / "pki")
    before = files.ca_cert.read_bytes()
    assert pki.init(tmp_path / "pki").ca_cert.read_bytes() == before
    assert pki.init(tmp_path / "pki", force=True).ca_cert.read_bytes() != before


def test_cli(tmp_path, capsys):
    assert cli.main(["pki", "init", "--dir", str(tmp_path / "d"), "--name", "h1,127.0.0.1"]) == 0
    assert pki.Files(tmp_path / "d").complete()
    assert "agent.pem" in capsys.readouterr().out

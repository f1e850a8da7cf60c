"""A throw-away PKI for the harness's TLS manager and relay, made at run time.

Every run makes new keys (EC P-256, one day of validity): nothing is shipped, nothing is
trusted outside the run. `Pki.create(folder)` writes PEM files there:

- `trusted`: the CA provisioned as `manager/caBundle`; `server` (127.0.0.1 and localhost) and
  `wrong_host` (only `wrong-host.conformance.invalid`) are its certificates;
- `other`: a CA the agent is never told about; `untrusted` (127.0.0.1, localhost) is its;
- `mail`: the CA provisioned as `transports/smtp/caBundle`; `relay` (127.0.0.1, localhost);
- `client_ca` and `client`: the agent's TLS client certificate (MS-SEC-18).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

WRONG_HOST = "wrong-host.conformance.invalid"
LOOPBACK_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM text and as files (for ssl.load_cert_chain)."""

    cert_pem: str
    key_pem: str
    cert_file: Path
    key_file: Path

    @property
    def chain_pem(self) -> str:
        """Certificate followed by its key: the form of `manager/clientCertificate`."""
        return self.cert_pem + self.key_pem


@dataclass(frozen=True)
class Pki:
    trusted: Issued
    other: Issued
    mail: Issued
    client_ca: Issued
    server: Issued
    wrong_host: Issued
    untrusted: Issued
    relay: Issued
    client: Issued

    @classmethod
    def create(cls, folder: Path) -> Pki:
        folder.mkdir(parents=True, exist_ok=True)
        titles = {"trusted": "Trusted CA", "other": "Unknown CA", "mail": "Mail CA"}
        titles["client_ca"] = "Client CA"
        cas = {
            n: _self_signed(ec.generate_private_key(ec.SECP256R1()), t) for n, t in titles.items()
        }

        def leaf(name: str, ca: str, hosts: tuple[str, ...], client: bool = False) -> Issued:
            return _write(folder, name, *_leaf(*cas[ca], hosts, client))

        return cls(
            trusted=_write(folder, "trusted", *cas["trusted"]),
            other=_write(folder, "other", *cas["other"]),
            mail=_write(folder, "mail", *cas["mail"]),
            client_ca=_write(folder, "client_ca", *cas["client_ca"]),
            server=leaf("server", "trusted", LOOPBACK_NAMES),
            wrong_host=leaf("wrong_host", "trusted", (WRONG_HOST,)),
            untrusted=leaf("untrusted", "other", LOOPBACK_NAMES),
            relay=leaf("relay", "mail", LOOPBACK_NAMES),
            client=leaf("client", "client_ca", ("conformance-agent",), client=True),
        )


_NOW = dt.timedelta(minutes=5)  # back-dated a little: clocks of two processes may differ


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MeterSync conformance (throw-away)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _validity(b: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return b.not_valid_before(now - _NOW).not_valid_after(now + dt.timedelta(days=1))


def _self_signed(
    key: ec.EllipticCurvePrivateKey, common: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    b = x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common))
    b = _validity(b.public_key(key.public_key()).serial_number(x509.random_serial_number()))
    b = b.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    b = b.add_extension(_usage(ca=True), critical=True)
    b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return b.sign(key, hashes.SHA256()), key


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    hosts: tuple[str, ...],
    client: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca.subject)
    b = _validity(b.public_key(key.public_key()).serial_number(x509.random_serial_number()))
    b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    b = b.add_extension(_usage(ca=False), critical=True)
    purpose = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    b = b.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    b = b.add_extension(aki, critical=False)
    if not client:
        names: list[x509.GeneralName] = []
        for h in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                names.append(x509.DNSName(h))
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


def _usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _write(
    folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Issued:
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    cert_file, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    cert_file.write_text(cert_pem, encoding="ascii")
    key_file.write_text(key_pem, encoding="ascii")
    key_file.chmod(0o600)
    return Issued(cert_pem, key_pem, cert_file, key_file)

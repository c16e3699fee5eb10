"""The TLS context every pool of the client uses: urllib3's defaults, partial-chain trust, and
the client certificate when the client has one.

GitHub Enterprise Server is often fronted by a certificate issued by an internal intermediate
CA, and the CA bundle an operator hands us may hold only that intermediate. OpenSSL insists on
a self-signed root unless ``VERIFY_X509_PARTIAL_CHAIN`` is set; Go (the reference client)
accepts any certificate in the pool as an anchor. With the flag, a bundle that holds only the
intermediate works; trust still comes only from what the bundle (or the default store) holds.

``check_hostname`` is off on the context because urllib3 then matches the host name itself
(``match_hostname``) and may switch ``verify_mode`` per pool (``verify=False``), which the ssl
module refuses while ``check_hostname`` is on.

Client certificates (mutual TLS: a corporate TLS-terminating proxy or a GHES front that asks
every client for a certificate) are loaded into that same context once, when the ``Client`` is
built, so every pool (direct, or through a proxy's CONNECT tunnel) presents the same
certificate, and a missing file, a wrong password or a key that does not match the certificate
is a ``ConfigError`` before any request. The ssl module loads certificates from files only; a
certificate given as PEM in memory is handed to OpenSSL through an anonymous in-memory file
(``memfd``, Linux) or, elsewhere, a private temporary file that is removed as soon as it is read,
so the key does not stay on disk. A key password is never left to OpenSSL's own prompt, which
would block a daemon on its terminal: without one, an encrypted key is refused.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TypeAlias

from urllib3.util.ssl_ import create_urllib3_context

from ._errors import ConfigError
from ._secrets import Secret
from ._value_class import ValueClass, value_field

__all__ = ["ClientCertInput", "ClientCertificate", "client_cert_context", "partial_chain_context",
           "proxy_cert_context"]

PathOrPem: TypeAlias = "str | bytes | os.PathLike[str]"


def partial_chain_context() -> ssl.SSLContext:
    """A client context with urllib3's protocol and cipher defaults and partial-chain trust.

    No CA is loaded here: urllib3 loads ``verify`` (a bundle path, or certifi for ``True``)
    into it for each connection, exactly as it would into its own default context.
    """
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.check_hostname = False
    flag = getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
    context.verify_flags |= flag
    return context


def _is_pem(value: object) -> bool:
    if isinstance(value, bytes):
        return True
    return isinstance(value, str) and "-----BEGIN" in value


class ClientCertificate(ValueClass):
    """A TLS client certificate and its private key, from files or from PEM in memory.

    ``cert`` is a path to a PEM file, or the PEM itself (``bytes``, or a ``str`` holding
    ``-----BEGIN``); it may hold the key too, and any intermediate certificates after the
    leaf. ``key`` is the private key the same way (None: it is in ``cert``). ``password``
    decrypts an encrypted key. The key and the password never show in ``repr``.

    ``Client(client_cert=...)`` also takes a path (certificate and key in one file) or a tuple
    ``(cert, key)`` / ``(cert, key, password)`` of the same forms, as requests does.

    A frozen value class (``_value_class.py``), not a dataclass: the same fields, validation,
    equality and ``repr``, without the ``dataclasses`` import a cron run paid (issue 28).
    """

    __slots__ = ()

    cert: PathOrPem
    key: PathOrPem | None = value_field(default=None, repr=False)
    password: str | bytes | None = value_field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name, value in (("cert", self.cert), ("key", self.key)):
            if value is None and name == "key":
                continue
            if not isinstance(value, (str, bytes, os.PathLike)) or (isinstance(value, (str, bytes)) and not value):
                raise ConfigError(f"client_cert: {name} must be a file path or PEM text, "
                                  f"got {type(value).__name__}")
        if self.password is not None:
            if not isinstance(self.password, (str, bytes)):
                raise ConfigError("client_cert: the key password must be a str or bytes")
            text = self.password.decode("utf-8", "ignore") if isinstance(self.password, bytes) else self.password
            Secret(text)  # register it with the redactor
        if _is_pem(self.key):
            key = self.key
            Secret(key.decode("ascii", "ignore") if isinstance(key, bytes) else str(key))

    @classmethod
    def from_files(cls, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str] | None = None,
                   password: str | bytes | None = None) -> ClientCertificate:
        """A certificate (and key) in PEM files, read when the ``Client`` is built."""
        return cls(os.fspath(cert_path), None if key_path is None else os.fspath(key_path), password)

    @classmethod
    def from_pem(cls, cert_pem: str | bytes, key_pem: str | bytes | None = None,
                 password: str | bytes | None = None) -> ClientCertificate:
        """A certificate (and key) held in memory as PEM: nothing is written to disk."""
        data = cert_pem.encode("ascii") if isinstance(cert_pem, str) else cert_pem
        key = key_pem.encode("ascii") if isinstance(key_pem, str) else key_pem
        return cls(data, key, password)

    @classmethod
    def of(cls, value: ClientCertInput) -> ClientCertificate:
        """What ``Client(client_cert=...)`` accepts, as one ``ClientCertificate``."""
        if isinstance(value, ClientCertificate):
            return value
        if isinstance(value, (str, bytes, os.PathLike)):
            return cls(value)
        if isinstance(value, tuple) and len(value) in (2, 3):
            return cls(*value)
        raise ConfigError("client_cert must be a path, a (cert, key) or (cert, key, password) tuple, "
                          f"or a ClientCertificate; got {type(value).__name__}")

    def load_into(self, context: ssl.SSLContext) -> None:
        """Load the certificate chain and key into ``context``; ``ConfigError`` saying what is wrong."""
        password = self.password
        try:
            key_context = nullcontext(None) if self.key is None else _as_file(self.key, "key")
            with _as_file(self.cert, "certificate") as cert_file, key_context as key_file:
                # A callable that returns b"" stops OpenSSL from prompting on the terminal.
                context.load_cert_chain(cert_file, key_file, password if password is not None else (lambda: b""))
        except FileNotFoundError as exc:
            raise ConfigError(f"client_cert: no such file: {exc.filename}") from None
        except ssl.SSLError as exc:
            raise ConfigError(_why_not_loaded(exc, self.password is not None)) from None
        except OSError as exc:
            raise ConfigError(f"client_cert: cannot read {exc.filename or 'the certificate'}: "
                              f"{exc.strerror or type(exc).__name__}") from None


ClientCertInput: TypeAlias = (
    "ClientCertificate | str | bytes | os.PathLike[str] | tuple[PathOrPem, PathOrPem]"
    " | tuple[PathOrPem, PathOrPem, str | bytes | None]"
)


def _why_not_loaded(exc: ssl.SSLError, had_password: bool) -> str:
    text = str(exc)
    if "KEY_VALUES_MISMATCH" in text:
        return "client_cert: the private key does not belong to the certificate"
    if "PEM" in text or "BAD_DECRYPT" in text or "bad decrypt" in text:
        if had_password:
            return "client_cert: could not read the certificate or key (not PEM, or the password is wrong)"
        return ("client_cert: could not read the certificate or key (not PEM, or the key is encrypted: "
                "pass its password)")
    return f"client_cert: could not load the certificate and key ({exc.reason or 'SSL error'})"


@contextmanager
def _as_file(value: PathOrPem, what: str) -> Iterator[str]:
    """A path OpenSSL can open for ``value``: the path itself, or an in-memory file holding the PEM."""
    if not _is_pem(value):
        yield str(os.fspath(value))
        return
    data = value.encode("ascii") if isinstance(value, str) else value
    assert isinstance(data, bytes)
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None and os.path.isdir("/proc/self/fd"):
        fd = memfd(f"scaleset-client-{what}", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="scaleset-tls-") as folder:  # 0700, the file 0600
        path = os.path.join(folder, what)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        yield path


def client_cert_context(cert: ClientCertificate) -> ssl.SSLContext:
    """``partial_chain_context()`` presenting ``cert``: the context every origin's pool of a client
    with a client certificate uses (direct connections and CONNECT tunnels). urllib3 loads the
    ``verify`` CAs into it per connection, as into the plain one."""
    context = partial_chain_context()
    cert.load_into(context)
    return context


def proxy_cert_context(cert: ClientCertificate, verify: bool | str) -> ssl.SSLContext:
    """The context of the handshake with an ``https://`` proxy, presenting ``cert``.

    urllib3 loads no CA into a proxy's own context, so the trust ``verify`` names is loaded here:
    a bundle file or directory, certifi's bundle for True (as requests would), none for False."""
    context = client_cert_context(cert)
    if verify is False:
        context.verify_mode = ssl.CERT_NONE
        return context
    if verify is True:
        from requests.utils import DEFAULT_CA_BUNDLE_PATH, extract_zipped_paths

        verify = extract_zipped_paths(DEFAULT_CA_BUNDLE_PATH)  # what requests loads for verify=True
    if os.path.isdir(verify):
        context.load_verify_locations(capath=verify)
    else:
        context.load_verify_locations(cafile=verify)
    return context

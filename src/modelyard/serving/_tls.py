"""``--ssl-certfile`` / ``--ssl-keyfile``: HTTPS, and gRPC over TLS, from one certificate.

The pair is loaded once before the server starts, the way the servers will load it, so
a missing file, a file that is not PEM or a key that is not the certificate's is one
line naming the file, not a server (or every worker) failing at start-up.
"""

from __future__ import annotations

import os
import ssl
from typing import NoReturn

from modelyard.errors import ConfigError

_KEY_REMEDY = "pass the certificate's private key as an unencrypted PEM file"


def check_tls(certfile: str | None, keyfile: str | None) -> tuple[str, str] | None:
    """The (certificate, key) paths, made absolute, after loading them; None without TLS."""
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together; pass both")
    for flag, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(
                f"{flag} {path}: cannot read it ({exc.strerror}); pass a readable PEM file"
            ) from None

    def encrypted() -> NoReturn:  # OpenSSL would otherwise prompt on the terminal
        raise ConfigError(f"--ssl-keyfile {keyfile} is encrypted; {_KEY_REMEDY}")

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile, encrypted)
    except ssl.SSLError as exc:
        raise _which_failed(certfile, keyfile, exc) from None
    return os.path.abspath(certfile), os.path.abspath(keyfile)


def _which_failed(certfile: str, keyfile: str, exc: ssl.SSLError) -> ConfigError:
    if exc.reason == "KEY_VALUES_MISMATCH":
        return ConfigError(
            f"--ssl-keyfile {keyfile} is not the private key of --ssl-certfile {certfile}; "
            "pass the key the certificate was issued for"
        )
    try:  # OpenSSL's "PEM lib" does not say which file: load the certificate alone
        ssl.create_default_context(cafile=certfile)
    except ssl.SSLError:
        return ConfigError(
            f"--ssl-certfile {certfile} is not a PEM certificate; "
            "pass the server's certificate (chain) in PEM form"
        )
    return ConfigError(f"--ssl-keyfile {keyfile} is not a PEM private key; {_KEY_REMEDY}")

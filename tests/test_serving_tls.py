"""``modelyard serve --ssl-certfile --ssl-keyfile``: HTTPS and gRPC over TLS on a real server,
one worker and several, with a self-signed certificate made here; a bad pair of flags or
files is a one-line error before anything starts.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tritonclient.utils import InferenceServerException

from cli_support import run_cli
from registry_support import serving_workspace
from server_support import running_server


@dataclass
class Pair:
    cert: Path
    key: Path

    def trusting(self) -> ssl.SSLContext:
        """A client context that trusts this certificate (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.cert))


def _self_signed(folder: Path, name: str) -> Pair:
    """A certificate for 127.0.0.1 and localhost, signed by its own key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pair = Pair(folder / f"{name}.crt", folder / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pair


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return serving_workspace(tmp_path_factory.mktemp("tls") / "ws", ["iris"])


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return _self_signed(tmp_path_factory.mktemp("certs"), "server")


def _tls_args(pair: Pair) -> list[str]:
    return ["--ssl-certfile", str(pair.cert), "--ssl-keyfile", str(pair.key)]


def _grpc_infer(client: Any, values: list[float]) -> Any:
    x = grpcclient.InferInput("a", [len(values)], "FP64")
    x.set_data_from_numpy(np.array(values))
    return client.infer("iris", [x])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_https_and_grpc_over_tls_with_one_or_several_workers(
    root: Path, pair: Pair, workers: str
) -> None:
    args = [*_tls_args(pair), "--workers", workers, "--max-batch-rows", "5"]
    with running_server(
        root, ["iris@production"], *args, grpc=True, verify=pair.trusting()
    ) as server:
        assert server.url.startswith("https://")
        assert httpx.get(f"{server.url}/healthz", verify=pair.trusting()).status_code == 200
        r = httpx.post(
            f"{server.url}/v1/models/iris/predict", json={"a": 1.5}, verify=pair.trusting()
        )
        assert r.status_code == 200 and r.json()["prediction"] == {"a": 3.0}
        # The limits reach every worker too (they rebuild the app from a spec).
        rows = [{"a": float(i)} for i in range(6)]
        r = httpx.post(f"{server.url}/v1/models/iris/predict", json=rows, verify=pair.trusting())
        assert r.status_code == 413 and "--max-batch-rows" in r.json()["message"]

        # Not over plain HTTP, and not to a client that does not trust the certificate.
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{server.url}/healthz", timeout=5)
        # localhost is in the certificate as well as 127.0.0.1.
        r = httpx.get(f"https://localhost:{server.port}/healthz", verify=pair.trusting())
        assert r.status_code == 200

        url = f"127.0.0.1:{server.grpc_port}"
        with grpcclient.InferenceServerClient(
            url, ssl=True, root_certificates=str(pair.cert)
        ) as client:
            assert client.is_server_live()
            result = _grpc_infer(client, [1.0, 2.0])
            assert result.as_numpy("a").tolist() == [2.0, 4.0]
            with pytest.raises(InferenceServerException) as refused:
                _grpc_infer(client, [float(i) for i in range(6)])
            assert str(refused.value.status()) == "StatusCode.RESOURCE_EXHAUSTED"
            assert "--max-batch-rows" in str(refused.value.message())
        with grpcclient.InferenceServerClient(url) as plain:  # no TLS: no answer
            with pytest.raises(InferenceServerException):
                plain.is_server_live(client_timeout=2)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, pair: Pair) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    other = _self_signed(folder, "other")
    junk = folder / "junk.pem"
    junk.write_text("not a certificate\n")
    encrypted = folder / "encrypted.key"
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return {"other_key": other.key, "junk": junk, "encrypted": encrypted}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ssl-certfile", "{cert}"], "--ssl-certfile and --ssl-keyfile go together; pass both"),
        (["--ssl-keyfile", "{key}"], "--ssl-certfile and --ssl-keyfile go together; pass both"),
        (
            ["--ssl-certfile", "{missing}", "--ssl-keyfile", "{key}"],
            "--ssl-certfile {missing}: cannot read it (No such file or directory); "
            "pass a readable PEM file",
        ),
        (
            ["--ssl-certfile", "{cert}", "--ssl-keyfile", "{missing}"],
            "--ssl-keyfile {missing}: cannot read it",
        ),
        (
            ["--ssl-certfile", "{junk}", "--ssl-keyfile", "{key}"],
            "--ssl-certfile {junk} is not a PEM certificate; pass the server's certificate",
        ),
        (
            ["--ssl-certfile", "{cert}", "--ssl-keyfile", "{junk}"],
            "--ssl-keyfile {junk} is not a PEM private key",
        ),
        (
            ["--ssl-certfile", "{cert}", "--ssl-keyfile", "{other_key}"],
            "--ssl-keyfile {other_key} is not the private key of --ssl-certfile {cert}",
        ),
        (
            ["--ssl-certfile", "{cert}", "--ssl-keyfile", "{encrypted}"],
            "--ssl-keyfile {encrypted} is encrypted; pass the certificate's private key as an "
            "unencrypted PEM file",
        ),
    ],
)
def test_bad_tls_flags_are_one_line_errors_before_the_server_starts(
    capsys: pytest.CaptureFixture[str],
    root: Path,
    pair: Pair,
    bad_files: dict[str, Path],
    tmp_path: Path,
    flags: list[str],
    message: str,
) -> None:
    paths = {
        "cert": str(pair.cert),
        "key": str(pair.key),
        "missing": str(tmp_path / "missing.pem"),
        **{k: str(v) for k, v in bad_files.items()},
    }
    args = [f.format(**paths) for f in flags]
    code, out, err = run_cli(capsys, "serve", "iris@production", "-w", str(root), *args)
    assert code == 2, out + err
    assert message.format(**paths) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err

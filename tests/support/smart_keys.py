"""Key pairs for SMART Backend Services tests: private keys as PEM files for writeback's tenant
config, public keys as JWKs for the sandbox's client registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def make_key(keys_dir: Path, client_id: str, algorithm: str) -> dict[str, Any]:
    """Write ``keys_dir/{client_id}.pem``; return the public JWK (kid ``{client_id}-1``)."""
    if algorithm == "ES384":
        private: Any = ec.generate_private_key(ec.SECP384R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (keys_dir / f"{client_id}.pem").write_bytes(pem)
    return {**jwk, "kid": f"{client_id}-1", "alg": algorithm}

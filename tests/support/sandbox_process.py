"""The sandbox EHR as a real subprocess for tests, and request builders for it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from support.child_process import announced, stop

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0


class SandboxProcess:
    """One ``python -m sandbox`` process; ``url`` is known once it is listening."""

    def __init__(self, db: Path, log: Path, *extra: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.db = db
        self.log_path = log
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--port", "0", "--db", str(db), *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.url = self._wait_listening()

    def _wait_listening(self) -> str:
        url = announced(self.proc, "sandbox listening on ", START_TIMEOUT)
        if url is None:
            self.stop()
            raise RuntimeError("sandbox did not start; see its stderr log")
        return url

    def stop(self) -> int:
        code = stop(self.proc)
        self._log.close()
        return code


def observation(command_id: str | None = None, patient: str = "example") -> dict[str, Any]:
    """Vital-sign heart-rate Observation carrying a write-back command identifier."""
    return {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:writeback:command", "value": command_id or new_cmd()}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                        "display": "Vital Signs",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]
        },
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2024-05-01T10:30:00Z",
        "valueQuantity": {
            "value": 72,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def new_cmd() -> str:
    return uuid.uuid4().hex


def ident(cmd: str) -> str:
    return f"identifier=urn:writeback:command|{cmd}"


def poll_until(condition: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Call ``condition()`` until it returns a truthy value (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class SigningKey:
    """A client key pair for SMART Backend Services assertions (RS384 or ES384)."""

    def __init__(self, alg: str = "RS384", kid: str | None = None) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        self.alg = alg
        self.kid = kid or f"k-{uuid.uuid4().hex[:8]}"
        if alg.startswith("RS"):
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.private = ec.generate_private_key(ec.SECP384R1())

    def public_jwk(self) -> dict[str, Any]:
        from jwt.algorithms import ECAlgorithm, RSAAlgorithm

        algo: Any = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        jwk: dict[str, Any] = algo.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        pem: bytes = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.decode()

    def assertion(
        self,
        client_id: str,
        aud: str,
        *,
        lifetime: int = 240,
        jti: str | None = None,
        headers: dict[str, Any] | None = None,
        alg: str | None = None,
        **claims: Any,
    ) -> str:
        import jwt

        now = int(time.time())
        body = {
            "iss": client_id,
            "sub": client_id,
            "aud": aud,
            "iat": now,
            "exp": now + lifetime,
            "jti": jti or uuid.uuid4().hex,
            **claims,
        }
        return jwt.encode(
            body,
            self.private,
            algorithm=alg or self.alg,
            headers={"kid": self.kid, **(headers or {})},
        )


def token_form(assertion: str, scope: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
        "scope": scope,
    }

"""API keys in the X-API-Key header. Keys come from TUMORLENS_API_KEYS (comma-separated) and/or a
file (one key per line, '#' comments); only their SHA-256 is kept in memory and in the audit trail."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from fastapi import Request

from tumorlens.serve.errors import ServiceError

ENV_VAR = "TUMORLENS_API_KEYS"
HEADER = "X-API-Key"
MIN_KEY_LENGTH = 8


class AuthConfigError(ValueError):
    """Auth is on but the configured keys are missing or unusable."""


def key_id(key: str) -> str:
    """A short, non-reversible name for a key (what the audit trail records)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def load_api_keys(explicit=None, keys_file: Path | None = None, environ=None) -> tuple[str, ...]:
    environ = os.environ if environ is None else environ
    keys: list[str] = list(explicit or [])
    keys += [k.strip() for k in environ.get(ENV_VAR, "").split(",") if k.strip()]
    if keys_file is not None:
        path = Path(keys_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise AuthConfigError(f"cannot read API key file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise AuthConfigError(
                f"API key file {path} is not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); "
                "it must hold one key per line") from None
        keys += [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    short = [k for k in keys if len(k) < MIN_KEY_LENGTH]
    if short:
        raise AuthConfigError(f"{len(short)} API key(s) shorter than {MIN_KEY_LENGTH} characters; use long random keys")
    return tuple(dict.fromkeys(keys))


class KeyChecker:
    """Constant-time comparison of the presented key's hash against each known key's hash."""

    def __init__(self, keys: tuple[str, ...], enabled: bool = True):
        if enabled and not keys:
            raise AuthConfigError(
                f"authentication is on but no API keys are configured: set {ENV_VAR} (comma-separated), "
                "pass --api-keys-file, or use --no-auth for a local demo"
            )
        self.enabled = enabled
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def __call__(self, request: Request) -> str | None:
        """FastAPI dependency: the caller's key id, or None when auth is off; 401 otherwise."""
        if not self.enabled:
            return None
        presented = request.headers.get(HEADER)
        if not presented:
            raise ServiceError(401, "missing_api_key", f"send your API key in the {HEADER} header",
                               headers={"WWW-Authenticate": "ApiKey"})
        digest = hashlib.sha256(presented.encode()).digest()
        ok = False
        for known in self._digests:  # no early exit: timing does not tell which key nearly matched
            ok |= hmac.compare_digest(digest, known)
        if not ok:
            raise ServiceError(401, "invalid_api_key", f"the {HEADER} header does not hold a valid key",
                               headers={"WWW-Authenticate": "ApiKey"})
        return key_id(presented)

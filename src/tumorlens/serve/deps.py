"""FastAPI dependencies of the routes: the service, the caller's API key, the upload.

`api_key` goes through fastapi.security.APIKeyHeader, so the OpenAPI document declares the
X-API-Key scheme on every route that needs it (the /docs page then offers "Authorize").
"""

from __future__ import annotations

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from tumorlens.serve.auth import HEADER
from tumorlens.serve.errors import request_id_of
from tumorlens.serve.service import Service
from tumorlens.serve.upload import Upload, read_upload

# auto_error=False: a missing key is answered by KeyChecker in the service's own error shape.
API_KEY_SCHEME = APIKeyHeader(name=HEADER, auto_error=False, scheme_name="ApiKey",
                              description="one of the keys the operator configured (TUMORLENS_API_KEYS or --api-keys-file)")


def service(request: Request) -> Service:
    return request.app.state.service


def api_key(request: Request, _declared: str | None = Security(API_KEY_SCHEME),
            svc: Service = Depends(service)) -> str | None:
    """The caller's key id (what the audit trail records), None when auth is off; 401 otherwise."""
    return svc.keys(request)


def request_id(request: Request) -> str:
    return request_id_of(request)


async def upload(request: Request, key_id: str | None = Depends(api_key), svc: Service = Depends(service)) -> Upload:
    """The uploaded file, read only after the key is checked."""
    return await read_upload(request, svc.settings.max_upload_bytes)

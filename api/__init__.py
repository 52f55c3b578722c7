"""HTTP API: palm-pay terminal endpoints and ops endpoints over the agent's state directory.

Start with `create_app()`; `payops serve` runs it under uvicorn.
"""

from .app import create_app, openapi_schema
from .keys import ApiKey, ApiKeyStore, Role
from .openapi_docs import schema_json

__all__ = ["ApiKey", "ApiKeyStore", "Role", "create_app", "openapi_schema", "schema_json"]

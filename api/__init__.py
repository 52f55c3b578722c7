"""HTTP API: palm-pay terminal endpoints and ops endpoints over the agent's state directory.

Start with `create_app()`; `payops serve` runs it under uvicorn.
"""

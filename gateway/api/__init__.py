"""The partner HTTP API (issue 3, brief §1 "partner systems", §6 "Security"): FastAPI under ``/api/v1``.

``create_app(gw)`` (`gateway.api.main`) assembles it; ``gateway serve`` runs it with uvicorn.
"""

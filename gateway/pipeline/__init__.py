"""The pipeline stages: ingest, dispatch (seal, sign, send), reconcile, and the run that chains them."""

"""One module per resource (STYLE, full-stack-fastapi-template: ``api/routes/<resource>.py``)."""

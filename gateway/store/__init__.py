"""The store: tables, engine, and the bulk statements of the hot path."""

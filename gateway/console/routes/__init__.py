"""The console's pages and actions, one module per screen."""

"""kenning: local semantic code search as a language server and CLI."""

__version__ = "0.1.0"

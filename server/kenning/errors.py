"""Typed errors that the CLI and the language server turn into messages.

Anything derived from :class:`KenningError` is a user error: the CLI prints its
message on one line and exits 1, the language server answers with it. Anything
else is a bug and is logged with its traceback.
"""


class KenningError(Exception):
    """A user-facing error whose message is complete on its own."""


class WorkspaceError(KenningError):
    """The workspace path is missing, not a folder, or unreadable."""


class LocationError(KenningError):
    """A FILE:LINE or URI that does not name a place in the workspace."""


class UsageError(KenningError):
    """Arguments that are well-formed but make no sense (a bad glob, k <= 0, ...)."""


class HomeError(KenningError):
    """KENNING_HOME (or a folder kenning needs in it) cannot be created or written."""


class DamagedFileError(KenningError):
    """A file kenning owns under KENNING_HOME is damaged; it can be moved aside and made again."""


class IndexCorruptError(DamagedFileError):
    """The index database cannot be opened or fails its integrity check."""


class IndexBusyError(KenningError):
    """Another process holds the index for writing."""


class ModelError(KenningError):
    """The embedding model is unknown, missing, or fails verification."""


class NeedsEmbeddingsError(KenningError):
    """A search mode needs vectors that the index does not have yet."""

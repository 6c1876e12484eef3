"""``modelyard.__version__``, read from the installed distribution's metadata.

A module of its own because ``importlib.metadata`` costs tens of milliseconds to import:
only the callers that ask for the version pay for it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("modelyard")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

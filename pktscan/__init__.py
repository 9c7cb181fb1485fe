"""pktscan: packet-level TLS certificate discovery."""

__version__ = "0.1.0"

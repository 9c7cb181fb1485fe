"""The lab: network namespaces with real TLS servers, for tests and demos."""

from pktscan.lab.lab import Lab
from pktscan.lab.plan import DEFAULT_NAME

__all__ = ["DEFAULT_NAME", "Lab"]

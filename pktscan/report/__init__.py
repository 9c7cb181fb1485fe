"""The HTML report of the certificate inventory: numbers, charts and tables."""

from pktscan.report.data import ReportData, collect
from pktscan.report.html import render

__all__ = ["ReportData", "collect", "render"]

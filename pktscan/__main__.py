"""Run the CLI as `python -m pktscan`."""

from pktscan.cli import main

main()

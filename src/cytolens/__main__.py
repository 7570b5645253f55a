"""``python -m cytolens`` runs the command-line interface."""

from cytolens.cli import main

main()

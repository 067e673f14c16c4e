"""`python -m specmem` runs the CLI."""

from specmem.server.cli import main

main()

"""`python -m specmem` runs the CLI."""

from specmem.cli import main

main()

"""`python -m tierwise.cli`: the command line."""

from tierwise.cli.main import main

main()

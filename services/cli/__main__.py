"""`python -m services.cli`: the `kontakt` command."""

from services.cli import main

main()

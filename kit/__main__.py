"""`python -m kit ...`: the `kit` console script (worker tests and notebooks without the script on PATH)."""

from kit.cli.app import main

main()

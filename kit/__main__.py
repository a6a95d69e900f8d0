"""`python -m kit ...`: the `kit` console script (what `kit train --ddp N` runs under torchrun; worker tests and
notebooks without the script on PATH)."""

from kit.cli.app import main

if __name__ == "__main__":
    main()

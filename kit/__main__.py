"""`python -m kit` (what `kit train --ddp N` runs under torchrun)."""

from kit.cli.app import main

if __name__ == "__main__":
    main()

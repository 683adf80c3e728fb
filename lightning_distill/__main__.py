"""``python -m lightning_distill``: the ``lightning-distill`` command."""

from lightning_distill.lightning.main import main

if __name__ == "__main__":
    main()

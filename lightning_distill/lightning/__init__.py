"""The Lightning layer: the core wired into fits. Imports :mod:`lightning_distill.core`, never the recipes.

:mod:`.modules` (LightningModules), :mod:`.callbacks` (thin schedules around core functions), :mod:`.data`
(LightningDataModules), :mod:`.tuning` (the ``tune`` search), :mod:`.cli` (``DistillCLI``), :mod:`.trainer`
(``benchmark`` and ``export`` subcommands) and :mod:`.main` (the ``lightning-distill`` command). Each is imported on
its own.
"""

__all__: list[str] = []

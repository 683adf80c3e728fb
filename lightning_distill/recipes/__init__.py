"""Recipes: whole compression runs as library code. May import both the core and the Lightning layer.

- :mod:`.engine`: :class:`~lightning_distill.recipes.engine.Recipe`, steps that are redone when what they read
  changes, and the options every recipe shares.
- :mod:`.text`: the text-classification steps (teacher, distill, prune, offset, quantize, export, benchmark, report)
  that the CLINC recipes share.
- One module per task, each with ``main(argv=None)``: :mod:`.digits`, :mod:`.mnist`, :mod:`.mnist_cnn`,
  :mod:`.clinc`, :mod:`.clinc_offline`. The scripts under ``recipes/`` call them.
"""

__all__: list[str] = []

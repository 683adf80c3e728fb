"""Recipes as library code: the steps the scripts under ``recipes/`` run, each a short method that builds its objects.

``lightning_distill.recipes.text``: the text-classification recipe (teacher, distill, prune, quantize, export,
benchmark, report) that ``recipes/clinc.py`` and ``recipes/clinc_offline.py`` share.
"""

__all__: list[str] = []

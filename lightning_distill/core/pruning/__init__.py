"""Pruning without Lightning: schedules, unstructured magnitude masks, structured removal of units, save/load."""

from lightning_distill.core.pruning.graph import UNIT_TYPES, UnitGroup
from lightning_distill.core.pruning.importance import l1_importance, taylor_importance
from lightning_distill.core.pruning.schedule import PruningSchedule
from lightning_distill.core.pruning.selection import DEFAULT_EXCLUDE, select_weights
from lightning_distill.core.pruning.serialization import (
    load_pruned,
    pruned_shapes,
    resize_to_shapes,
    resize_to_state_dict,
    save_pruned,
)
from lightning_distill.core.pruning.structured import (
    SliceRecord,
    find_unit_groups,
    keep_indices,
    prune_structured,
    remove_units,
    slice_optimizer_states,
    units_to_keep,
)
from lightning_distill.core.pruning.unstructured import (
    apply_masks,
    magnitude_masks,
    prune_magnitude,
    sparsity,
    sparsity_report,
)

__all__ = [
    "DEFAULT_EXCLUDE",
    "UNIT_TYPES",
    "PruningSchedule",
    "SliceRecord",
    "UnitGroup",
    "apply_masks",
    "find_unit_groups",
    "keep_indices",
    "l1_importance",
    "load_pruned",
    "magnitude_masks",
    "prune_magnitude",
    "prune_structured",
    "pruned_shapes",
    "remove_units",
    "resize_to_shapes",
    "resize_to_state_dict",
    "save_pruned",
    "select_weights",
    "slice_optimizer_states",
    "sparsity",
    "sparsity_report",
    "taylor_importance",
    "units_to_keep",
]

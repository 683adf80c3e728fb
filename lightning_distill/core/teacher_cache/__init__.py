"""The teacher-logit cache: a teacher's logits over a training set, computed once, stored, and looked up by index.

Plain PyTorch (no Lightning): :mod:`.cache` plans and fills the cache (keyed by the teacher's weights and the exact
inputs it sees, split over processes under DDP); :mod:`.logits` stores the rows (float32, float16 or top-k) and reads
them back. :class:`~lightning_distill.lightning.modules.DistillationModule` uses it through
``teacher_cache_dir`` / ``cache_teacher_logits``.
"""

from lightning_distill.core.teacher_cache.cache import Plan, load_or_compute, model_digest, plan_cache
from lightning_distill.core.teacher_cache.logits import CacheDtype, StorageFormat, TeacherLogits

__all__ = ["CacheDtype", "Plan", "StorageFormat", "TeacherLogits", "load_or_compute", "model_digest", "plan_cache"]

"""Fairness: pure metrics (`metrics`), the seed's `FairnessAssessor` and the mitigator."""

from exporter.lazy_exports import lazy

_EXPORTS = {"FairnessAssessor": "exporter.fairness.assessor"}
__getattr__ = lazy(_EXPORTS)
__all__ = list(_EXPORTS)

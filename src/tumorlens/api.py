"""The Python API: audit, explain and predict any model from a notebook, in one call each.

    import tumorlens
    report = tumorlens.audit("resnet18_brain.pt", "data/brain-tumor-mri", arch="resnet18",
                             classes=["glioma", "meningioma", "notumor", "pituitary"],
                             input_size=224, normalize="imagenet")
    report.verdict["status"], report.records.head()
    report.save("runs/my_audit")

Each function lives beside the part it runs (audit/api.py, explain/api.py, evaluation/api.py); this
module gathers them, and `tumorlens` exposes them. The command line is a thin caller of the same steps.
"""

from tumorlens.audit.api import AuditReport, as_samples, audit
from tumorlens.evaluation.api import predict
from tumorlens.explain.api import explain
from tumorlens.models.loading import load_model

__all__ = ["AuditReport", "audit", "explain", "predict", "load_model", "as_samples"]

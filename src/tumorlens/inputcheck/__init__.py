"""Is this a brain MRI slice? One input check for every entry point (predict, explain, evaluate,
the audit's data checks, the service, monitoring): check_image / check_images."""

from tumorlens.inputcheck.check import check_image, check_images
from tumorlens.inputcheck.result import Finding, InputCheck

__all__ = ["Finding", "InputCheck", "check_image", "check_images"]

"""tumorlens: brain-tumor MRI classification that shows whether its decisions are clinically meaningful.

Importing tumorlens changes nothing in your process. The command line and the service apply two
process settings at start-up (tumorlens.runtime.configure_process); a library user who wants the
same speed calls it once, before torch is imported.
"""

__version__ = "0.1.0"

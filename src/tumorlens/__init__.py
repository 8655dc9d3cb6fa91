"""tumorlens: brain-tumor MRI classification that shows whether its decisions are clinically meaningful."""

__version__ = "0.1.0"

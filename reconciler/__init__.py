"""API users of an email delivery service as code."""

__version__ = "0.1.0"

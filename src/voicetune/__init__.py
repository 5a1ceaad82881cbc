"""voicetune: turn an author's Word papers into a local model that writes in their voice."""

__version__ = "0.1.0"

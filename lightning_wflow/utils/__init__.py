"""Small shared helpers: atomic file writes."""

from .io import atomic_path, atomic_write_json, atomic_write_text

__all__ = ["atomic_path", "atomic_write_json", "atomic_write_text"]

"""wardwatch: a sepsis early-warning model put at the bedside safely."""

__version__ = "0.1.0"

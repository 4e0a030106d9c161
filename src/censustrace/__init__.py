"""censustrace: lawful, checked and traceable onward sharing of school census data."""

__version__ = "0.1.0"

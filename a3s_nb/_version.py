"""The version of a3s_nb, importable without importing the package root."""

__version__ = "0.1.0"

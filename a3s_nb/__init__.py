"""a3s_nb: save, resume and analyse a3s-code agent sessions from Jupyter."""

__version__ = "0.1.0"

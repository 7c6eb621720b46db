"""thinkc: make reasoning LLMs think with fewer tokens (CTS token selection, LightThinker gists)."""
__version__ = "0.1.0"

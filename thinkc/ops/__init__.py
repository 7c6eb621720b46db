"""Hot-path ops with CUDA / C++ / pure-torch implementations (see _backend.py for dispatch)."""
from thinkc.ops._backend import backend, extension_status, report  # noqa: F401

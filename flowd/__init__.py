"""flowd: a local document-flow runner.

Layers point one way: ``flowd.flows`` (formats, formula language, compiler) <- ``flowd.engine``
(runs a binary on documents) <- the faces (``flowd.cli``; later the job system, daemon and API).
"""

__version__ = "0.1.0"

"""The step kinds of a flow, each a function from records to records (SPEC §2.1).

``process_files`` is not here: it turns bytes into a document (:mod:`flowd.engine.digitize`) and
is driven by :mod:`flowd.engine.pipeline`, which also owns step outputs and timeouts.
"""

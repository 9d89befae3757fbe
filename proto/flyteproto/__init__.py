"""betterproto2 code generated from flyteidl2's descriptors by ``proto/generate.py``.

Do not edit: run ``python proto/generate.py`` instead.
"""

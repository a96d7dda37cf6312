"""Entry points: the ``idbatch`` command, the demo and the embedded mode.

The top layer: it may import every other package; nothing imports it.
"""

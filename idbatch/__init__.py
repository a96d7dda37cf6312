"""idbatch: bulk verification of Chinese resident ID cards through third-party APIs."""

__version__ = "0.1.0"

"""Referee: admits a pod only when every image it runs carries a valid Notary Project signature."""

__version__ = "0.1.0"

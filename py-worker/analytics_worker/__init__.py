"""Analytics engine Python worker: serves ML, time-series and text algorithms over PROTOCOL.md."""

__version__ = "1.0.0"

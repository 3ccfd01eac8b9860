"""cancelnotify: order-cancellation emails, sent well and at once."""

__version__ = "0.1.0"

"""Tests of the cancellation email: rendering, locales, links, MIME message."""

"""Pydantic v2 models for everything that crosses the HTTP boundary."""

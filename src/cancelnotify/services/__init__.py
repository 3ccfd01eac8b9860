"""Business operations; they flush, the request's transaction commits."""

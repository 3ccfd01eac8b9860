"""Email: rendering, MIME building, SMTP transport and the dev sink."""

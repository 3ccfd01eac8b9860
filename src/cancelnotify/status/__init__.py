"""The customer-facing pages: the cancellation status page and the feedback thank-you page."""

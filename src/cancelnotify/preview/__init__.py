"""/preview: the template workbench (scenarios, checks, rendering for template authors)."""

"""API-format twins of the UI workflows in ../../workflows (the files the tests queue)."""

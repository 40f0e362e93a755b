"""The `safepassage` command line."""

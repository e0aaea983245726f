"""The ``cxrwatch`` command line."""

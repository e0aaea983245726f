"""cxrwatch: real-time deterioration alerts from chest radiographs and clinical data."""

__version__ = "0.1.0"

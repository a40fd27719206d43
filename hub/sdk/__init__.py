"""cxhub connector SDK."""

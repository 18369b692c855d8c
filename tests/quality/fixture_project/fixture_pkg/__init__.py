"""A tiny package whose coverage the quality tests measure."""

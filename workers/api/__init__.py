"""The HTTP front door of writeback."""

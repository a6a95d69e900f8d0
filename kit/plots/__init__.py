"""Helpers shared by the PNGs kit writes (the blend report): fonts for class names in any script."""

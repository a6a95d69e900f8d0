"""kit: from a folder of images to a leaderboard-ready CSV."""

__version__ = "0.1.0"

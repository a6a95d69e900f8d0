"""Training: one loop for every member kind, configured by validated member configs."""

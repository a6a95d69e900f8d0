"""`kit report`: one self-contained HTML page of a workspace: scores, errors, label issues, leaks."""

"""Submission files in the exact shape of the competition's sample_submission.csv (docs/submit.md).

sample.py reads CSVs as written and detects the output kind; format.py turns probabilities into the sample's
rows (pure); check.py validates; write.py writes atomically with a sidecar and lists submissions;
source.py loads a blend's or a member's test probabilities; make.py ties them together for the CLI.
"""

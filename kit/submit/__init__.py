"""Submission files in the exact shape of the competition's sample_submission.csv (docs/submit.md).

sample.py reads CSVs as written and detects the output kind; format.py turns probabilities into the sample's
rows (pure); check.py validates; write.py writes atomically with a sidecar and lists submissions;
source.py loads a blend's or a member's test probabilities; make.py ties them together for the CLI.
"""

from kit.submit.check import CheckReport, check_submission_rows
from kit.submit.format import match_ids, value_cells
from kit.submit.make import build_rows, check_submission_file, load_sample, make_submission
from kit.submit.sample import CsvFile, Layout, detect_layout, read_csv_exact
from kit.submit.write import list_submissions

__all__ = [
    "CheckReport",
    "CsvFile",
    "Layout",
    "build_rows",
    "check_submission_file",
    "check_submission_rows",
    "detect_layout",
    "list_submissions",
    "load_sample",
    "make_submission",
    "match_ids",
    "read_csv_exact",
    "value_cells",
]

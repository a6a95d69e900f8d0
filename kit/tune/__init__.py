"""`kit tune MEMBER`: an optuna study over the search space in kit.yaml's `members.MEMBER.tune` (docs/tune.md).

space.py   the search space: parsed, checked against the member schema at both ends of every range and
           at every choice, sampled, and turned into validated member configs
study.py   the storage (any optuna RDB URL; SQLite by default), the study, one trial = the member trained on
           the chosen folds in a scratch folder (workdir/tune/MEMBER/STUDY/trialN), pruning on the epoch hook
plots.py   optuna's history and parameter-importance plots as PNG
apply.py   `--apply`: the best values as a new member MEMBER_tuned in kit.yaml (comments kept)
"""

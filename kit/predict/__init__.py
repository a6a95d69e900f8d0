"""`kit predict` and `kit export`: a trained ensemble as a portable predictor (docs/predict.md).

images.py     image inputs (folder, table, paths, PIL images, uint8 arrays) decoded once per size
members.py    a member's plan and its fold models run over decoded images, one model at a time
kinds/        each member kind's predictor (kinds/KIND.py): building, loading and running its fold models,
              and what a bundle holds for it; the one registry of them (kinds/__init__.py)
recipe.py     the blend winner (or one member) as data, and applying it to the members' logits
predictor.py  `Predictor`: from a workspace or a bundle
bundle.py     `kit export`: the self-contained bundle and its manifest; reading one only through its manifest
bundle_schema.py  what a bundle's JSON files may hold (types, ranges, paths inside it), checked before use
scratch.py    $TMPDIR scratch folders a later run removes if this one is killed; disk-full errors
run.py        what the CLI calls: predict a folder or table into a sample-shaped CSV
"""

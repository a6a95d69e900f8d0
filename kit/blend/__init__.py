"""Declarative ensembling over cached OOF logits: spec -> candidates -> blenders (nested CV) -> blend artifacts.

`kit.blend.run.run_blend` is what `kit blend` calls; `kit.artifacts.blend.load_blend` is what `kit submit` reads.
"""

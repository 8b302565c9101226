"""Experiments built from the library's parts, with their own data and hand-tuned constants: ``r1_zero``
(the R1-Zero recipe from a base model pretrained on a synthetic corpus)."""

"""Evaluation: detection metrics, scoring a detector on a manifest, the headline comparison,
plots, contact sheets and bona fide / attack decisions on ordinary photographs."""

"""The jobs: the detector variants they compare, the main job and its ablations
(:mod:`.reproduce`), the feature probe, and the shipped detectors."""

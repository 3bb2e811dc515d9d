"""Foundations every other folder builds on: safe checkpoint I/O, image decoding and batches,
devices, torchrun process groups and shards, face landmarks and alignment, package folders
and result provenance. Nothing here imports the rest of facecat."""

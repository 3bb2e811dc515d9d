"""Data: image manifests, the embedded protocol and everything it is built from (bundled bona
fide faces, DCGAN generator, capture pipeline, simulated presentation attacks, adversarial
faces), readers of real data sets (SiW-Mv2, the LFW demo set) and face cropping."""

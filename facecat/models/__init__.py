"""The detectors: the FaceCat model (:mod:`.facecat`) built from the diffusion UNet, its
frozen features, fusion, head and text-guided alignment; the CDCN++ baseline (:mod:`.cdcn`);
detector configs and the registry with its single-file detector format."""

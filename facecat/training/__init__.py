"""Training: the shared epoch loop, FaceCat head training (:mod:`.facecat`) with its feature
cache, JPEG copies and losses, CDCN++ training (:mod:`.cdcn`) with pseudo-depth targets, one
call that trains any detector kind (:mod:`.detector`), and face-diffusion-model pretraining."""

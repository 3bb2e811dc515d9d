"""Physical-world attacks: simulated 3D-printed adversarial faces and their held-out suite.

Modules: :mod:`.regions` (eye / eye-nose / respirator print regions), :mod:`.render`
(differentiable print, wear, pose, shading and re-capture on the template face surface of
:mod:`facecat.core.face_surface`), :mod:`.texture_attack` (EOT texture optimisation against
an FR target), :mod:`.physical_set` (the cached held-out set), :mod:`.captured` (real
captured sets), :mod:`.harness` and :mod:`.report` (the suite's checks and results).
"""

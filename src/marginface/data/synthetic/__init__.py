"""The embedded synthetic identity dataset (``synthetic:`` specs): ``faces`` draws a face from
``(seed, identity)`` and a picture of it from ``(seed, identity, image)``; ``dataset`` serves
the pictures as a :class:`~marginface.data.base.FaceDataset` and reads the specs."""

from marginface.data.synthetic.dataset import SyntheticFaces, SyntheticSpec, parse_synthetic_spec
from marginface.data.synthetic.faces import identity_params, render_face

__all__ = [
    "SyntheticFaces",
    "SyntheticSpec",
    "identity_params",
    "parse_synthetic_spec",
    "render_face",
]

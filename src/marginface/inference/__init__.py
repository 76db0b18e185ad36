"""Using a trained model: what stands behind ``embed``, ``verify``, ``search``, ``export`` and
``import``.

* ``images``: loose image files listed, loaded and embedded (:func:`embed_files`), the
  unreadable ones kept apart.
* ``verify``: two face images compared the way ``marginface verify`` does
  (:func:`verify_images`), and the aligner the use commands build (``face_aligner``).
* ``search``: exact cosine search (torch / faiss, :func:`cosine_search`); ``index``: a gallery
  built once and searched many times, exact or approximate (HNSW, IVF-PQ).
* ``export``: ONNX export verified with onnxruntime; ``importing``: a published face model
  (a state dict, an InsightFace ONNX file) -> a marginface model folder.
"""

from marginface.inference.search import cosine_search

__all__ = ["cosine_search"]

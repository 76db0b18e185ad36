"""Photos in: face detection with 5 landmarks and alignment to the ArcFace template.

* ``detect``: the MTCNN detector (``mtcnn``: its three networks and weights; ``boxes``: overlap
  and non-maximum suppression), :class:`~marginface.data.detection.detect.FaceAligner` (a
  photo -> the aligned crop of its face) and the choice of detector; ``scrfd``: InsightFace's
  SCRFD detector, an ONNX file run by onnxruntime.
* ``align``: 5-point similarity alignment to the 112x112 template.
* ``faces``: a detected face (box, landmarks, score) and the RGB array the detectors read.
* ``detect_cache``: the faces found in each photo, kept by the photo's content.
* ``detect_folder``: a folder of photos -> a folder of aligned crops (``marginface align
  --detect``).
"""

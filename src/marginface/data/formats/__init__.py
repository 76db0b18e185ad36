"""The file formats of the data layer: how a spec becomes a dataset or a pair set, and the
readers and writers of each kind of file.

* ``datasets``: the dataset formats (:func:`register_dataset_format`; ``folder``,
  ``recordio``, ``synthetic``), which :func:`marginface.data.open_dataset` asks; their names
  are exported here.
* ``pairs``: the pair-set formats (:func:`register_pair_format`; ``bin``, ``pairs-txt``,
  ``pairs-csv``), which :func:`marginface.data.open_pairs` asks.
* ``registry``: :class:`~marginface.data.formats.registry.FormatRegistry`, what each of the
  two holds its formats in.
* ``folder``: a folder with one sub-folder per identity; ``recordio``: InsightFace's RecordIO
  packs (``.rec`` / ``.idx``), read and written; ``pack``: a folder into a pack
  (``marginface pack``).
* ``verification``: pair sets (:class:`~marginface.data.formats.verification.PairSet`): the
  ``.bin`` files, ``pairs.txt`` and ``.csv`` lists, and pairs generated from a dataset.
* ``restricted_pickle`` and ``npz``: readers of untrusted ``.bin`` pickles and ``.npz``
  galleries that allocate and run nothing a file declares before checking it.
"""

from marginface.data.formats.datasets import (
    DATASET_FORMATS,
    SYNTHETIC,
    DatasetFormat,
    find_format,
    list_dataset_formats,
    refuse_aligner,
    register_dataset_format,
    spec_help,
)
from marginface.data.formats.pairs import (
    PAIR_FORMATS,
    find_pair_format,
    list_pair_formats,
    register_pair_format,
)

__all__ = [
    "DATASET_FORMATS",
    "PAIR_FORMATS",
    "SYNTHETIC",
    "DatasetFormat",
    "find_format",
    "find_pair_format",
    "list_dataset_formats",
    "list_pair_formats",
    "refuse_aligner",
    "register_dataset_format",
    "register_pair_format",
    "spec_help",
]

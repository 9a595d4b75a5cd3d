"""synthdata: train conditional generators on a small labeled image dataset and write scored, versioned
labeled synthetic datasets.

    import synthdata
    g = synthdata.load_generator("data/models/cgan")        # any registered generator's checkpoint
    images = g.generate(labels=[0, 1, 2], seed=0)            # uint8 (3, C, H, W), deterministic
    data = synthdata.load_dataset("data/synthetic/cgan")     # uint8 images, labels, metadata
"""

from synthdata.checkpoint import load_generator
from synthdata.dataset import load_dataset
from synthdata.errors import SynthdataError

__version__ = "0.1.0"
__all__ = ["SynthdataError", "load_dataset", "load_generator", "__version__"]

"""Dataset classes (``torch.utils.data.Dataset``) for the common neuromorphic datasets.

Each reads the files as distributed (decoders in :mod:`snnir.data.formats`), returns
``(events, label)`` or, with ``data_type="frame"``, ``(frames, label)`` integrated by
:func:`snnir.data.to_frames` and cached on disk. Nothing is downloaded: when the files are missing
the error says where to get them and how ``root`` must look.

=================  ==============  ===========  ==========================
class              sensor          classes      splits
=================  ==============  ===========  ==========================
NMNIST             34x34           10           train / test
NCaltech101        180x240         101 + bg     all
DVS128Gesture      128x128         11           train / test
CIFAR10DVS         128x128         10           all / train / test (9:1)
ASLDVS             180x240         24           all
DVSLip             128x128         100          train / test
HARDVS             260x346         300          train / val / test
ESImageNet         256x256         1000         train / test (val)
NavGesture         240x304         6            all
SHD                700 channels    20           train / test
SSC                700 channels    35           train / valid / test
=================  ==============  ===========  ==========================

Importing this package imports torch; ``import snnir.data`` does not.

Example:
    >>> import tempfile, struct, os
    >>> from snnir.data.datasets import NMNIST
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "Train", "7"))
    >>> event = struct.pack("BBBBB", 3, 4, 0x80, 0x01, 0x02)      # x=3 y=4 ON t=258us
    >>> _ = open(os.path.join(root, "Train", "7", "00001.bin"), "wb").write(event * 2)
    >>> ds = NMNIST(root, train=True, data_type="frame", frames_number=2)
    >>> frames, label = ds[0]
    >>> len(ds), label, frames.shape, float(frames[:, 1, 4, 3].sum())
    (1, 7, (2, 2, 34, 34), 2.0)
"""

from snnir.data.datasets.asl_dvs import ASLDVS
from snnir.data.datasets.base import DatasetNotFoundError, EventDataset
from snnir.data.datasets.cifar10_dvs import CIFAR10DVS, read_cifar10_dvs
from snnir.data.datasets.dvs128_gesture import DVS128Gesture
from snnir.data.datasets.nav_gesture import NavGesture
from snnir.data.datasets.nmnist import NMNIST, NCaltech101
from snnir.data.datasets.numpy_datasets import HARDVS, DVSLip, ESImageNet
from snnir.data.datasets.shd import SHD, SSC

__all__ = ["ASLDVS", "CIFAR10DVS", "DVS128Gesture", "DVSLip", "DatasetNotFoundError", "ESImageNet", "EventDataset",
           "HARDVS", "NCaltech101", "NMNIST", "NavGesture", "SHD", "SSC", "read_cifar10_dvs"]

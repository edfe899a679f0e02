"""Decoders for the file formats of the neuromorphic datasets; each returns an event array.

=========================  ===================================  ============================
format                     datasets                             decoder
=========================  ===================================  ============================
ATIS ``.bin`` (40-bit)     N-MNIST, N-Caltech101                :func:`read_atis_bin` (numpy)
AEDAT 3.1 + labels CSV     DVS128 Gesture (CIFAR10-DVS copies)  :func:`read_aedat31` (numpy)
AEDAT 2.0 (jAER)           CIFAR10-DVS                          :func:`read_aedat2` (numpy)
MATLAB ``.mat`` level 5    ASL-DVS                              :func:`read_asl_dvs_mat` (scipy.io)
structured ``.npy``        DVS-Lip                              :func:`read_npy_events` (numpy)
``.npz`` t/x/y/p           HARDVS                               :func:`read_npz_events` (numpy)
``.npz`` pos/neg           ES-ImageNet                          :func:`read_es_imagenet` (numpy)
ATIS ``td.dat``            NavGesture                           :func:`read_atis_td_dat` (numpy)
HDF5                       SHD, SSC                             :class:`SpikeHDF5` (h5py)
=========================  ===================================  ============================

Every decoder raises :class:`EventFormatError` (a ``ValueError`` and a
:class:`snnir.errors.FormatError`) naming the file and, where the format allows, the byte offset
when a file is truncated or corrupted. None of them executes code from the file.

Example:
    >>> import os, tempfile
    >>> from snnir.data.formats import EventFormatError, read_atis_bin
    >>> path = os.path.join(tempfile.mkdtemp(), "short.bin")
    >>> _ = open(path, "wb").write(bytes(7))
    >>> try:
    ...     read_atis_bin(path)
    ... except EventFormatError as err:
    ...     print(err.offset)
    5
"""

from snnir.data.formats._common import EventFormatError
from snnir.data.formats.aedat import (
    aedat_version,
    decode_dvs128_address,
    dvs128_pixel_events,
    read_aedat2,
    read_aedat31,
    read_gesture_labels,
    read_trials,
)
from snnir.data.formats.atis import read_atis_bin
from snnir.data.formats.hdf5 import SpikeHDF5
from snnir.data.formats.mat import read_asl_dvs_mat
from snnir.data.formats.numpy_files import read_es_imagenet, read_npy, read_npy_events, read_npz, read_npz_events
from snnir.data.formats.prophesee import read_atis_td_dat

__all__ = [
    "EventFormatError", "SpikeHDF5", "aedat_version", "decode_dvs128_address", "dvs128_pixel_events",
    "read_aedat2", "read_aedat31", "read_asl_dvs_mat", "read_atis_bin", "read_atis_td_dat", "read_es_imagenet",
    "read_gesture_labels", "read_npy", "read_npy_events", "read_npz", "read_npz_events", "read_trials",
]

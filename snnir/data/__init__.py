"""Neuromorphic data: event streams, frame integration, padded batches, dataset readers."""

from snnir.data.cache import CacheWarning, FrameCache, frames_setting
from snnir.data.collate import pad_sequence_collate, padded_sequence_mask
from snnir.data.events import AUDIO_EVENT_DTYPE, EVENT_DTYPE, EventError, check_events, make_events
from snnir.data.frames import frame_index, to_frames
from snnir.data.transforms import (
    CenterCrop,
    Compose,
    Crop,
    Denoise,
    Downsample,
    MergePolarity,
    RandomTimeDrop,
    TimeReversal,
    ToFrames,
)

__all__ = [
    # events
    "AUDIO_EVENT_DTYPE", "EVENT_DTYPE", "EventError", "check_events", "make_events",
    # frames and their cache
    "CacheWarning", "FrameCache", "frame_index", "frames_setting", "to_frames",
    # batches
    "pad_sequence_collate", "padded_sequence_mask",
    # transforms
    "CenterCrop", "Compose", "Crop", "Denoise", "Downsample", "MergePolarity", "RandomTimeDrop", "TimeReversal",
    "ToFrames",
]

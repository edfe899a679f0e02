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
)

__all__ = ["AUDIO_EVENT_DTYPE", "EVENT_DTYPE", "CacheWarning", "CenterCrop", "Compose", "Crop", "Denoise",
           "Downsample", "MergePolarity", "RandomTimeDrop", "TimeReversal", "EventError", "FrameCache", "check_events",
           "frame_index", "frames_setting", "make_events", "pad_sequence_collate", "padded_sequence_mask", "to_frames"]

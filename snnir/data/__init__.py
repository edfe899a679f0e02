"""Neuromorphic data: event streams, frame integration, padded batches, dataset readers."""

from snnir.data.events import AUDIO_EVENT_DTYPE, EVENT_DTYPE, make_events

__all__ = ["AUDIO_EVENT_DTYPE", "EVENT_DTYPE", "make_events"]

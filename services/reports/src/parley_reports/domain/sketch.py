# mypy: disable-error-code="no-untyped-call"
# (ddsketch's protobuf helpers carry no annotations)
"""Durations as mergeable quantile sketches (DDSketch), and their compact stored form.

A bucket keeps one sketch per measure; a report merges the sketches of every bucket it covers
(hours into days, channels into a Supervisor's view) and reads the median and p90 from the merged
sketch. DDSketch answers any quantile within a relative error of :data:`RELATIVE_ACCURACY` of the
true value, and two sketches merge into exactly the sketch of the union: no error grows with the
number of merges (docs/reports.md compares it with t-digest).
"""

from __future__ import annotations

import base64
import zlib

from ddsketch import DDSketch
from ddsketch.pb.ddsketch_pb2 import DDSketch as DDSketchMessage
from ddsketch.pb.proto import DDSketchProto, KeyMappingProto

RELATIVE_ACCURACY = 0.01
"""Every quantile read is within 1% of the true value (60 s reads as 59.4 to 60.6 s)."""


class Durations:
    """Seconds of one measure: a count and a DDSketch; mergeable, serializable."""

    __slots__ = ("sketch",)

    def __init__(self, sketch: DDSketch | None = None) -> None:
        self.sketch = sketch if sketch is not None else DDSketch(RELATIVE_ACCURACY)

    @property
    def count(self) -> int:
        return int(self.sketch.count)

    def add(self, seconds: float) -> None:
        # a clock a little behind another (provider and Parley times) never makes a negative wait
        self.sketch.add(max(0.0, float(seconds)))

    def merge(self, other: Durations) -> None:
        if other.count:
            self.sketch.merge(other.sketch)

    def quantile(self, q: float) -> float | None:
        """The q-quantile in seconds (within 1%), or None when there is no sample."""
        if not self.count:
            return None
        value = self.sketch.get_quantile_value(q)
        return None if value is None else float(value)

    def share_within(self, seconds: float) -> float | None:
        """The share of samples at most ``seconds`` (a sample within 1% of it may fall either way)."""
        if not self.count:
            return None
        message = DDSketchProto.to_proto(self.sketch)
        mapping = KeyMappingProto.from_proto(message.mapping)
        within = message.zeroCount
        store = message.positiveValues
        for i, n in enumerate(store.contiguousBinCounts):
            if n and mapping.value(store.contiguousBinIndexOffset + i) <= seconds:
                within += n
        for key, n in store.binCounts.items():
            if n and mapping.value(key) <= seconds:
                within += n
        return float(within) / self.count

    def dumps(self) -> str:
        """The sketch's protobuf form, compressed, as ASCII (about 100 bytes for a typical hour)."""
        raw = DDSketchProto.to_proto(self.sketch).SerializeToString()
        return base64.b64encode(zlib.compress(raw)).decode()

    @classmethod
    def loads(cls, text: str) -> Durations:
        message = DDSketchMessage()
        message.ParseFromString(zlib.decompress(base64.b64decode(text)))
        return cls(DDSketchProto.from_proto(message))

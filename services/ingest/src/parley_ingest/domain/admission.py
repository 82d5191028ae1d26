"""How many archive publishes one ingest process lets wait for the broker at once (pure).

Above its capacity a webhook endpoint that queues every request makes all of them slow: the
provider's client times out, retries, and the retries queue behind the first attempts. A fixed
number of publishes in flight keeps the accepted ones at the broker's latency; a delivery that
finds them all taken is answered 503 with Retry-After at once, and the provider sends it again.
Only verified deliveries take a place, so an unsigned flood cannot crowd out the provider. While
every place is taken, a verified delivery is refused before it is parsed and its record built: a
refusal must cost far less than an acceptance, or refusing alone keeps the process saturated.
"""

from __future__ import annotations


class Admission:
    """A counter of places; ``enter`` never waits: False means "full, answer 503"."""

    def __init__(self, places: int) -> None:
        if places < 1:
            raise ValueError("an admission needs at least one place")
        self.places = places
        self.taken = 0

    @property
    def full(self) -> bool:
        """Every place is taken: a delivery arriving now would be refused."""
        return self.taken >= self.places

    def enter(self) -> bool:
        if self.taken >= self.places:
            return False
        self.taken += 1
        return True

    def leave(self) -> None:
        if self.taken == 0:
            raise RuntimeError("left an admission that was not entered")
        self.taken -= 1

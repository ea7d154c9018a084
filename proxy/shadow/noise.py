"""Noise cancellation as in Twitter's Diffy.

Two primaries answering the same request already disagree on some fields (timestamps, trace
ids, random ordering). Per endpoint and field we count raw differences (primary vs candidate)
and noise differences (primary vs a second primary). Only fields whose raw count clearly
exceeds their noise count are blamed on the candidate; the rest are reported as noise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

RELATIVE_THRESHOLD = 0.20  # |raw - noise| / (raw + noise)
ABSOLUTE_THRESHOLD = 0.0003  # |raw - noise| / samples (0.03%)

FAILURE, NOISE, BELOW = "failure", "noise", "below_threshold"


def is_failure(
    raw: float,
    noise: float,
    samples: int,
    relative: float = RELATIVE_THRESHOLD,
    absolute: float = ABSOLUTE_THRESHOLD,
) -> bool:
    """Diffy's rule: raw > noise and both the relative and the absolute gap exceed thresholds."""
    if samples <= 0 or raw <= noise:
        return False
    gap = raw - noise
    return gap / (raw + noise) > relative and gap / samples > absolute


def verdict(
    raw: float,
    noise: float,
    samples: int,
    relative: float = RELATIVE_THRESHOLD,
    absolute: float = ABSOLUTE_THRESHOLD,
) -> str:
    """failure | noise (primaries disagree there too) | below_threshold (rare, not blamed)."""
    if is_failure(raw, noise, samples, relative, absolute):
        return FAILURE
    return NOISE if noise > 0 else BELOW


@dataclass(slots=True)
class NoiseAccount:
    """Per-field counts for one endpoint.

    Noise may be sampled on fewer requests than raw differences (unsafe methods are never sent
    to the primary twice), so the noise count is scaled to the raw sample count before the
    thresholds apply; when every sample has a noise sample this is exactly Diffy's rule.
    """

    samples: int = 0
    noise_samples: int = 0
    raw: Counter = field(default_factory=Counter)
    noise: Counter = field(default_factory=Counter)

    def add(self, raw_fields: Iterable[str], noise_fields: Iterable[str] | None) -> None:
        """Count one sample; each field at most once per sample."""
        self.samples += 1
        self.raw.update(set(raw_fields))
        if noise_fields is not None:
            self.noise_samples += 1
            self.noise.update(set(noise_fields))

    def expected_noise(self, name: str) -> float:
        if not self.noise_samples:
            return 0.0
        return self.noise[name] * self.samples / self.noise_samples

    def verdicts(
        self, relative: float = RELATIVE_THRESHOLD, absolute: float = ABSOLUTE_THRESHOLD
    ) -> dict[str, str]:
        """A verdict for every field that differed in either comparison."""
        out: dict[str, str] = {}
        for name in set(self.raw) | set(self.noise):
            out[name] = verdict(
                self.raw[name], self.expected_noise(name), self.samples, relative, absolute
            )
        return out

    def failures(
        self, relative: float = RELATIVE_THRESHOLD, absolute: float = ABSOLUTE_THRESHOLD
    ) -> frozenset[str]:
        return frozenset(
            name for name, v in self.verdicts(relative, absolute).items() if v == FAILURE
        )

"""Every random stream is derived from a seed parameter and a counter, so runs replay exactly and a
resumed run continues the same streams it would have drawn uninterrupted."""

import hashlib


def derive(*parts: object) -> int:
    """A 63-bit seed from any tuple of ints and strings."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)

"""CRC-32C (Castagnoli), the checksum Secret Manager sends with every secret payload.

Pure Python and table-driven, one byte at a time: payloads are small (64 KiB at
most), so a C extension would buy nothing worth a dependency on the agent's path.
"""

from __future__ import annotations

POLYNOMIAL = 0x82F63B78  # 0x1EDC6F41, bit-reversed


def _table() -> tuple[int, ...]:
    entries = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ POLYNOMIAL if crc & 1 else crc >> 1
        entries.append(crc)
    return tuple(entries)


TABLE = _table()


def crc32c(data: bytes) -> int:
    """The CRC-32C of ``data``, as an unsigned 32-bit number."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF

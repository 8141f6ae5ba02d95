"""Words for speaking: times, dates, articles and barcode symbologies, said one way.

Core vocabulary shared by the router on the glasses (its spoken replies, the facts
it sends) and the gateway's prompts (the local time it puts before a question).
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["article", "barcode_type_name", "spoken_date", "spoken_datetime", "spoken_time"]


def article(name: str) -> str:
    """``a`` or ``an`` before ``name``."""
    return "an" if name[:1].lower() in "aeiou" else "a"


def spoken_time(now: datetime) -> str:
    """``2:05 PM``."""
    hour = now.hour % 12 or 12
    return f"{hour}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}"


def spoken_date(now: datetime) -> str:
    """``Tuesday, 3 November 2026``."""
    return f"{now:%A}, {now.day} {now:%B} {now.year}"


def spoken_datetime(now: datetime) -> str:
    """``Tuesday, 3 November 2026, 2:05 PM``."""
    return f"{spoken_date(now)}, {spoken_time(now)}"


_BARCODE_NAMES = {
    "EAN13": "EAN-13",
    "EAN8": "EAN-8",
    "UPCA": "UPC-A",
    "UPCE": "UPC-E",
    "QRCODE": "QR code",
    "CODE128": "Code 128",
    "CODE39": "Code 39",
    "DATAMATRIX": "Data Matrix",
    "PDF417": "PDF417",
    "ITF": "ITF",
}


def barcode_type_name(kind: str) -> str:
    """A spoken name for a symbology: ``EAN_13`` -> ``EAN-13``, ``QRCODE`` -> ``QR code``."""
    key = "".join(ch for ch in kind.upper() if ch.isalnum())
    return _BARCODE_NAMES.get(key, kind.strip() or "barcode")

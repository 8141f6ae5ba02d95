"""``glasses-agent memory list|show|forget``: the notes kept on the device (docs/memory.md).

The file is ``[memory] path``. Reading commands never create it: with no file there
are no notes. A damaged file, an unknown id or a bad argument is exit 2 and one line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glasses_agent.config import Config
from glasses_agent.errors import BadInputError

if TYPE_CHECKING:
    from glasses_agent.edge.memory import MemoryStore, StoredNote

_CELL_CHARS = 40


def _note_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise BadInputError(f"{text!r} is not a note id (a number from `glasses-agent "
                            "memory list`)")
    return int(text)


def _open(config: Config) -> MemoryStore | None:
    """The store, or None when its file does not exist (reading never creates it)."""
    from glasses_agent.edge.memory import memory_path, open_memory

    if not memory_path(config.memory).exists():
        return None
    return open_memory(config.memory)


def _as_json(stored: StoredNote) -> dict[str, Any]:
    note = stored.note
    location = (None if note.location is None
                else {"lat": note.location[0], "lon": note.location[1]})
    return {"id": stored.id, "text": note.text,
            "time": note.timestamp.isoformat(), "location": location,
            "facts": note.facts.to_wire(), "keyframe_bytes": stored.keyframe_bytes}


def _seen(stored: StoredNote) -> str:
    facts = stored.note.facts
    if facts.text:
        return " / ".join(facts.text)
    labels = facts.center_labels or facts.labels
    return ", ".join(label.name for label in labels) or "-"


def _cell(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _CELL_CHARS else text[:_CELL_CHARS - 3] + "..."


def _size(n_bytes: int) -> str:
    return "-" if not n_bytes else f"{n_bytes / 1024:.0f} KB" if n_bytes >= 1024 else f"{n_bytes} B"


def _list(args: argparse.Namespace, config: Config) -> int:
    from glasses_agent.edge.memory import memory_path

    store = _open(config)
    kept = [] if store is None else store.notes()
    if store is not None:
        store.close()
    if args.json:
        print(json.dumps([_as_json(s) for s in kept], ensure_ascii=False, indent=2))
        return 0
    path = memory_path(config.memory)
    if not kept:
        print(f"No notes kept ({path}).")
        return 0
    rows = [("ID", "WHEN", "NOTE", "SEEN", "KEYFRAME")] + [
        (str(s.id), s.note.timestamp.isoformat(sep=" ", timespec="minutes"), _cell(s.note.text),
         _cell(_seen(s)), _size(s.keyframe_bytes)) for s in kept]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(kept)} note{'s' if len(kept) != 1 else ''} in {path}")
    return 0


def _show(args: argparse.Namespace, config: Config) -> int:
    note_id = _note_id(args.id)
    store = _open(config)
    if store is None:
        raise BadInputError(f"no note {note_id}: no notes are kept yet")
    with store:
        stored = store.get(note_id)
        jpeg = store.keyframe(note_id) if stored is not None and args.keyframe_out else None
    if stored is None:
        raise BadInputError(f"no note {note_id} (`glasses-agent memory list` shows the ids)")
    if args.keyframe_out:
        if jpeg is None:
            raise BadInputError(f"note {note_id} has no keyframe kept")
        out = Path(args.keyframe_out).expanduser()
        try:
            out.write_bytes(jpeg)
        except OSError as exc:
            raise BadInputError(f"cannot write {out}: {exc.strerror or exc}") from exc
    if args.json:
        print(json.dumps(_as_json(stored), ensure_ascii=False, indent=2))
        return 0
    note = stored.note
    print(f"note {stored.id}: {note.text}")
    print(f"  when: {note.timestamp.isoformat(timespec='seconds')}")
    if note.facts.text:
        print(f"  text in view: {' / '.join(note.facts.text)}")
    for title, labels in (("in view", note.facts.labels),
                          ("centre", note.facts.center_labels)):
        if labels:
            print(f"  {title}: " + ", ".join(f"{x.name} ({x.score:.2f})" for x in labels))
    for barcode in note.facts.barcodes:
        print(f"  barcode: {barcode.type} {barcode.data}")
    if note.location is not None:
        print(f"  location: {note.location[0]:.5f}, {note.location[1]:.5f}")
    print(f"  keyframe: {_size(stored.keyframe_bytes)}"
          + (f" (written to {args.keyframe_out})" if args.keyframe_out else ""))
    return 0


def _forget(args: argparse.Namespace, config: Config) -> int:
    if args.all == (args.id is not None):
        raise BadInputError("give one note id, or --all")
    note_id = None if args.all else _note_id(args.id)
    store = _open(config)
    if store is None:
        if note_id is not None:
            raise BadInputError(f"no note {note_id}: no notes are kept yet")
        print("Forgot 0 notes.")
        return 0
    with store:
        if note_id is None:
            gone = store.forget_all()
            print(f"Forgot {gone} note{'s' if gone != 1 else ''}.")
            return 0
        if not store.forget(note_id):
            raise BadInputError(f"no note {note_id} (`glasses-agent memory list` shows the ids)")
    print(f"Forgot note {note_id}.")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "memory", help="the notes kept on the device: list, show, forget",
        description="The notes the wearer asked the glasses to remember, kept on the device "
                    "([memory] path).")
    commands = parser.add_subparsers(dest="memory_command", metavar="ACTION")

    def usage(args: argparse.Namespace, config: Config) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)
    listing = commands.add_parser("list", help="every kept note, oldest first")
    listing.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    listing.set_defaults(func=_list)
    show = commands.add_parser("show", help="one note in full")
    show.add_argument("id", metavar="ID", help="the note's id (from `memory list`)")
    show.add_argument("--keyframe-out", metavar="PATH",
                      help="write the note's keyframe JPEG to PATH")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(func=_show)
    forget = commands.add_parser("forget", help="forget one note, or all of them")
    forget.add_argument("id", metavar="ID", nargs="?", help="the note's id (from `memory list`)")
    forget.add_argument("--all", action="store_true", help="forget every note")
    forget.set_defaults(func=_forget)

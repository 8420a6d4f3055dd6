"""TensorBoard event files, read without TensorBoard: each tag's scalars by step, and the
run's hyperparameters.

An event file (``events.out.tfevents.*``: ``torch.utils.tensorboard``, tensorboardX,
TensorFlow's ``tf.summary``, Lightning's ``TensorBoardLogger``, Keras's ``TensorBoard``
callback) is a sequence of TFRecords, each an ``Event`` protocol buffer. The few fields
read here are decoded directly, so reading a run's curves needs neither TensorBoard nor
TensorFlow:

- ``Event.step`` (2) and ``Event.summary`` (5), whose ``Summary.value`` (1) entries have a
  ``tag`` (1) and either a ``simple_value`` (2: PyTorch's and TF1's scalars) or a
  one-element float ``tensor`` (8: TF2's ``tf.summary.scalar``);
- the HParams plugin's ``session_start_info`` (written by ``add_hparams`` and
  ``log_hyperparams``), whose ``hparams`` map holds the run's numeric hyperparameters.

Images, histograms, text and graphs are skipped. A record cut short at the end of a file
(a run still writing) ends the file's reading, as TensorBoard reads it. A later value of
a tag at a step already read replaces the earlier (a run resumed from a checkpoint logs
its steps again).

Example:

    >>> import tempfile
    >>> from tensorboardX import SummaryWriter
    >>> run = tempfile.mkdtemp()
    >>> with SummaryWriter(run) as writer:
    ...     for step in (0, 10, 20):
    ...         writer.add_scalar("val/loss", 2.0 - step / 20, step)
    >>> read_events(run).scalars["val/loss"]
    ([0.0, 10.0, 20.0], [2.0, 1.5, 1.0])
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from grokforecast.history import as_number

#: How an event file's name begins.
EVENT_FILE_PREFIX = "events.out.tfevents."
#: The HParams plugin's tag of the record holding a run's hyperparameters.
HPARAMS_TAG = "_hparams_/session_start_info"

# Protocol buffers' wire types.
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
# TensorFlow's DataType codes of the tensors read as scalars.
_DT_FLOAT, _DT_DOUBLE = 1, 2
#: ``TensorProto``'s repeated value fields read, by the type they hold (float_val, double_val).
_VALUE_FIELDS = {5: _DT_FLOAT, 6: _DT_DOUBLE}


@dataclass
class Events:
    """What a run's event files hold: ``scalars[tag] = (steps, values)`` in step order,
    and the numeric hyperparameters of its HParams record (empty where none)."""

    scalars: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    hyperparameters: dict[str, float] = field(default_factory=dict)


def is_event_file(path: Path) -> bool:
    return path.is_file() and path.name.startswith(EVENT_FILE_PREFIX)


def event_files(run: Path) -> list[Path]:
    """The event files of ``run``: the file itself, or those anywhere under the directory."""
    if run.is_dir():
        return sorted(path for path in run.rglob(f"{EVENT_FILE_PREFIX}*") if path.is_file())
    return [run] if is_event_file(run) else []


def read_events(run: str | Path) -> Events:
    """The scalars and hyperparameters of a run's event files (``run``: one file, or the
    run's directory). A file in a subdirectory prefixes its tags with the subdirectory, as
    TensorBoard names its runs: Keras writes ``train/`` and ``validation/`` event files
    with the same tags (``epoch_loss``), read as ``train/epoch_loss`` and
    ``validation/epoch_loss``; the HParams plugin's own subdirectories add no prefix."""
    run = Path(run)
    by_step: dict[str, dict[float, float]] = {}
    events = Events()
    for path in event_files(run):
        prefix = _prefix(run, path)
        for step, tag, scalar, plugin_content in _values(path.read_bytes()):
            if tag == HPARAMS_TAG and plugin_content is not None:
                events.hyperparameters.update(_session_hyperparameters(plugin_content))
            elif scalar is not None:
                by_step.setdefault(prefix + tag, {})[step] = scalar
    for tag, points in by_step.items():
        steps = sorted(points)
        events.scalars[tag] = (steps, [points[step] for step in steps])
    return events


def _prefix(run: Path, path: Path) -> str:
    """The tag prefix of event file ``path`` under the run directory ``run``: its
    subdirectory (``validation/``), none for a file given alone, one in the run's own
    directory, or one the HParams plugin wrote (a subdirectory named by a timestamp)."""
    if not run.is_dir() or path.parent == run:
        return ""
    relative = path.parent.relative_to(run).as_posix()
    return "" if as_number(relative.rpartition("/")[2]) is not None else f"{relative}/"


def _values(data: bytes) -> Iterator[tuple[float, str, float | None, bytes | None]]:
    """``(step, tag, scalar, plugin content)`` of every tagged summary value of an event
    file's bytes (:func:`_summary_value`)."""
    for record in _records(data):
        step, summary = 0.0, None
        for number, _, value in _fields(record):
            if number == 2 and isinstance(value, int):
                step = float(_signed(value))
            elif number == 5 and isinstance(value, bytes):
                summary = value
        if summary is None:
            continue
        for number, _, value in _fields(summary):
            if number != 1 or not isinstance(value, bytes):
                continue
            tag, scalar, plugin_content = _summary_value(value)
            if tag is not None:
                yield step, tag, scalar, plugin_content


def _records(data: bytes) -> Iterator[bytes]:
    """The payloads of a TFRecord file's records: a little-endian uint64 length, its
    masked CRC (4 bytes), the payload, and the payload's masked CRC (4 bytes). The CRCs
    are not checked; a record cut short ends the file."""
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        start = offset + 12
        if start + length + 4 > len(data):
            return
        yield data[start : start + length]
        offset = start + length + 4


def _fields(message: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` of a protocol buffer message: varints as
    unsigned ints, fixed 32- and 64-bit fields and length-delimited ones as their bytes.
    A message it cannot parse ends there (an unknown wire type, or a field running past
    the message's end: not a protocol buffer, or a damaged one)."""
    offset = 0
    while offset < len(message):
        key, offset = _varint(message, offset)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, offset = _varint(message, offset)
            yield number, wire, value
            continue
        if wire == _LENGTH_DELIMITED:
            size, offset = _varint(message, offset)
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
        else:
            return
        if offset + size > len(message):
            return
        yield number, wire, message[offset : offset + size]
        offset += size


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    value, shift = 0, 0
    while offset < len(data):
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
    return value, offset


def _signed(value: int) -> int:
    """An int64 varint's value (negative numbers are ten-byte two's complements)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _summary_value(message: bytes) -> tuple[str | None, float | None, bytes | None]:
    """A ``Summary.Value``'s tag, its scalar (a ``simple_value``, or a one-element float
    tensor; None otherwise) and its plugin data's content (None where it has none)."""
    tag = scalar = content = None
    for number, wire, value in _fields(message):
        if number == 1 and isinstance(value, bytes):
            tag = value.decode("utf-8", errors="replace")
        elif number == 2 and wire == _FIXED32:
            (scalar,) = struct.unpack("<f", value)
        elif number == 8 and isinstance(value, bytes):
            scalar = _tensor_scalar(value)
        elif number == 9 and isinstance(value, bytes):
            content = _plugin_content(value)
    return tag, scalar, content


def _tensor_scalar(message: bytes) -> float | None:
    """The value of a ``TensorProto`` holding one float or double; None for any other."""
    dtype, values = None, []
    for number, _, value in _fields(message):
        if number == 1:
            dtype = value
        elif number == 4:  # tensor_content: the raw little-endian values
            values += _floats(value, dtype)
        elif number in _VALUE_FIELDS:  # packed, or one value per field: the same bytes
            values += _floats(value, _VALUE_FIELDS[number])
    return values[0] if dtype in (_DT_FLOAT, _DT_DOUBLE) and len(values) == 1 else None


def _floats(data: int | bytes, dtype: object) -> list[float]:
    """Little-endian floats or doubles (by ``dtype``) of ``data``; none of another type."""
    if not isinstance(data, bytes) or dtype not in (_DT_FLOAT, _DT_DOUBLE):
        return []
    size, code = (4, "f") if dtype == _DT_FLOAT else (8, "d")
    return list(struct.unpack(f"<{len(data) // size}{code}", data[: len(data) // size * size]))


def _plugin_content(metadata: bytes) -> bytes | None:
    """``SummaryMetadata.plugin_data.content`` (field 1, then 2)."""
    for number, _, plugin_data in _fields(metadata):
        if number == 1 and isinstance(plugin_data, bytes):
            for inner, _, content in _fields(plugin_data):
                if inner == 2 and isinstance(content, bytes):
                    return content
    return None


def _session_hyperparameters(plugin_data: bytes) -> dict[str, float]:
    """The numeric hyperparameters of an ``HParamsPluginData``'s ``session_start_info``
    (field 3), whose ``hparams`` (1) map each name to a ``google.protobuf.Value``: its
    ``number_value`` (2), or a ``string_value`` (3) that reads as a number."""
    found: dict[str, float] = {}
    for number, _, session in _fields(plugin_data):
        if number != 3 or not isinstance(session, bytes):
            continue
        for entry_number, _, entry in _fields(session):
            if entry_number != 1 or not isinstance(entry, bytes):
                continue
            name, value = _map_entry(entry)
            if name is not None and value is not None:
                found[name] = value
    return found


def _map_entry(entry: bytes) -> tuple[str | None, float | None]:
    name = value = None
    for number, _, content in _fields(entry):
        if number == 1 and isinstance(content, bytes):
            name = content.decode("utf-8", errors="replace")
        elif number == 2 and isinstance(content, bytes):
            value = _protobuf_number(content)
    return name, value


def _protobuf_number(message: bytes) -> float | None:
    for number, wire, content in _fields(message):
        if number == 2 and wire == _FIXED64:
            return struct.unpack("<d", content)[0]
        if number == 3 and isinstance(content, bytes):
            return as_number(content.decode("utf-8", "replace"))
    return None

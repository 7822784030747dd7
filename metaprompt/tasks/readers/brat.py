"""Reader for chia: brat standoff annotations of clinical-trial eligibility criteria, read from the zip.

``chia_with_scope.zip`` holds ``chia_with_scope/<NCTID>_{inc,exc}.txt`` (one criteria document) and a
matching ``.ann`` file; it is read in place with :mod:`zipfile`, never extracted. One
:class:`RelationRecord` per ``.txt`` member (2,000), in member-name order, with uid
``chia/all/<NCTID>_<inc|exc>`` and origin ``chia_with_scope.zip!<member>``. The ``.conf`` members and
the folder entry are brat configuration, not documents, and are ignored; a ``.txt`` without its
``.ann`` (or the reverse) raises.

``.ann`` line kinds (MANIFEST.yaml) and what becomes of them:

- ``T<n>\\t<type> <start> <end>[;<start> <end>...]\\t<text>``: an entity. Offsets count characters of
  the ``.txt`` exactly as stored (its CRLF line ends included). Every fragment must lie inside the
  text, and the mention field must equal the fragments joined by one space up to whitespace (runs of
  whitespace compare equal; this absorbs the '\\r' that CRLF documents put inside a few spans and the
  '\\n' the annotation tool wrote for it). A contiguous entity keeps its span, trimmed of surrounding
  whitespace, and its text is that slice of the document (so ``text == doc[start:end]``). A
  *discontinuous* entity (1,822 in the corpus) has no single span: it gets ``start = end = -1`` and
  the brat text convention, the stripped fragments joined by one space (e.g. ``589 595;607 622`` ->
  "before 60 years of age"), which is also the text its relations use.
- ``R<n>\\t<type> Arg1:T<i> Arg2:T<j>``: a gold triple ``Relation(text of Ti, type, text of Tj)``; all
  14 R types count (Has_value, Has_temporal, ..., multi, causal, OR).
- ``*\\t<OR|NOT> T<i> T<j> ...``: an equivalence group (symmetric-transitive in annotation.conf), also
  gold. A group of n members gives the n-1 triples between neighbours in text order (members sorted
  by first character offset, ties by file order): the fewest triples that connect the group, and a
  deterministic target a reader of the text can reproduce. The manifest counts one relation per
  group line (24,272 = 19,304 R lines + 4,968 groups); :func:`parse_ann` reports both numbers.
- ``A<n>`` attributes (316 ``Optional`` flags) and ``#<n>`` annotator notes (1) are not relations and
  are not turned into records' content; other brat kinds (E, N, M) do not occur and raise.
- Blank lines are skipped. A line that is none of the above is one of the 18 "continuation lines" the
  manifest notes: a mention whose text contained newlines. It must follow a T line; it is appended to
  that mention's text with '\\n' when the joined text then matches the document (the repair), and is
  dropped as stray when the T line's own text already matches without it (2 cases,
  NCT02590822_exc T39 and NCT02739295_exc T7, whose following lines repeat other criteria). Anything
  else raises.

One known annotation error is accepted explicitly: ``NCT03460002_inc.ann`` T5 has mention field
"Person Surveillance Site" over the span reading "Demographic Surveillance Site"; the offsets win.
Whitespace-only documents (three ``_exc.txt`` files: trials without exclusion criteria) are kept as
records with no entities, since the manifest counts them (annotations on such a text fail the span
checks).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.readers import register
from metaprompt.tasks.readers._io import decode
from metaprompt.tasks.records import Entity, Record, Relation, RelationRecord

ARCHIVE = "chia_with_scope.zip"
# (member, T id) whose mention field contradicts its offsets in the original release; offsets win.
KNOWN_TEXT_MISMATCHES = frozenset({("chia_with_scope/NCT03460002_inc.ann", "T5")})

_T_LINE = re.compile(r"^(T\d+)\t(\S+) (\d+ \d+(?:;\d+ \d+)*)\t(.*)$")
_R_LINE = re.compile(r"^(R\d+)\t(\S+) Arg1:(\S+) Arg2:(\S+)\t?$")
_GROUP_LINE = re.compile(r"^\*\t(\S+)((?: \S+)+)$")
_ANY_ID = re.compile(r"^(?:[TREAMN#]\d+|\*)\t")  # a brat annotation line starts "<id><TAB>"


def _same_text(a: str, b: str) -> bool:
    """Equality up to whitespace runs (see module docstring: CR/LF inside spans)."""
    return a.split() == b.split()


@dataclass
class _Mention:
    line: int
    tid: str
    label: str
    spans: list[tuple[int, int]]
    mention: str  # the text field of the T line
    continuation: list[str] = field(default_factory=list)


@dataclass
class Annotation:
    """One parsed ``.ann`` file.

    Attributes:
        entities: Entities in file order (one per T line).
        relations: Gold triples in file order (a group's neighbour pairs at the group's line).
        n_binary: Number of R lines.
        n_groups: Number of ``*`` equivalence-group lines.
    """

    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    n_binary: int = 0
    n_groups: int = 0


def _entity(m: _Mention, text: str, where: str, member: str) -> Entity:
    """Validate a T mention against the document and build its entity (see module docstring)."""
    for start, end in m.spans:
        if not 0 <= start < end <= len(text):
            raise DataFormatError(where, m.line, f"{m.tid}: span {start}-{end} outside the text ({len(text)} chars)")
    pieces = [text[s:e] for s, e in m.spans]
    joined = " ".join(pieces)
    repaired = "\n".join([m.mention, *m.continuation])
    if not (
        _same_text(repaired, joined)
        or (m.continuation and _same_text(m.mention, joined))  # stray lines after a complete mention
        or (member, m.tid) in KNOWN_TEXT_MISMATCHES
    ):
        raise DataFormatError(where, m.line, f"{m.tid}: mention text {repaired!r} does not match the text {joined!r}")
    if any(not p.strip() for p in pieces):
        raise DataFormatError(where, m.line, f"{m.tid}: a span covers only whitespace")
    if len(m.spans) > 1:
        return Entity(-1, -1, m.label, " ".join(p.strip() for p in pieces))
    start, end = m.spans[0]
    piece = pieces[0]
    start += len(piece) - len(piece.lstrip())
    end -= len(piece) - len(piece.rstrip())
    return Entity(start, end, m.label, text[start:end])


def parse_ann(text: str, ann: str, where: str, member: str = "") -> Annotation:
    """Parse one ``.ann`` file against its document text.

    Args:
        text: The ``.txt`` document, exactly as stored.
        ann: The ``.ann`` content.
        where: Name used in errors, ``chia_with_scope.zip!<member>``.
        member: The ``.ann`` member name (for :data:`KNOWN_TEXT_MISMATCHES`).

    Raises:
        DataFormatError: On any malformed line, bad offset, mismatching mention or unknown T id.
    """
    mentions: dict[str, _Mention] = {}
    links: list[tuple[int, str, str, list[str]]] = []  # (line, kind, type, argument ids) in file order
    last_t: _Mention | None = None  # the T line a continuation line may belong to
    for lineno, line in enumerate(ann.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if not _ANY_ID.match(line):
            if last_t is None:
                raise DataFormatError(
                    where, lineno, f"unrecognised line {line[:60]!r} (not T/R/*/A/#, not after a T line)"
                )
            last_t.continuation.append(line)
            continue
        last_t = None
        if m := _T_LINE.match(line):
            tid, label, spans, mention = m.groups()
            if tid in mentions:
                raise DataFormatError(where, lineno, f"duplicate entity id {tid}")
            pairs = [tuple(map(int, s.split())) for s in spans.split(";")]
            mentions[tid] = last_t = _Mention(lineno, tid, label, pairs, mention)  # type: ignore[arg-type]
        elif m := _R_LINE.match(line):
            links.append((lineno, "R", m.group(2), [m.group(3), m.group(4)]))
        elif m := _GROUP_LINE.match(line):
            members = m.group(2).split()
            if len(members) < 2:
                raise DataFormatError(where, lineno, f"equivalence group with fewer than 2 members: {line!r}")
            links.append((lineno, "*", m.group(1), members))
        elif line[0] not in "A#":  # attributes and notes carry no triples (module docstring)
            raise DataFormatError(where, lineno, f"malformed or unsupported annotation line {line[:60]!r}")

    result = Annotation()
    entities = {tid: _entity(m, text, where, member) for tid, m in mentions.items()}
    result.entities = list(entities.values())
    for lineno, kind, rel_type, args in links:
        unknown = [a for a in args if a not in entities]
        if unknown:
            raise DataFormatError(where, lineno, f"{kind} line names unknown entity id(s) {unknown}")
        if kind == "R":
            result.n_binary += 1
            result.relations.append(Relation(entities[args[0]].text, rel_type, entities[args[1]].text))
        else:
            result.n_groups += 1
            ordered = sorted(args, key=lambda a: (mentions[a].spans[0][0], args.index(a)))
            for a, b in zip(ordered, ordered[1:], strict=False):
                result.relations.append(Relation(entities[a].text, rel_type, entities[b].text))
    return result


def _read_member(zf: zipfile.ZipFile, path: Path, member: str) -> str:
    try:
        data = zf.read(member)
    except (zipfile.BadZipFile, OSError, KeyError) as e:
        raise DataFormatError(f"{path}!{member}", None, f"cannot read archive member ({e})") from None
    return decode(data, f"{path}!{member}")


@register("chia")
def read(folder: Path) -> dict[str, list[Record]]:
    """Read chia: ``{"all": [...]}``, one record per criteria document (see module docstring)."""
    path = Path(folder) / ARCHIVE
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataFormatError(path, None, f"not a readable ZIP archive ({e})") from None
    records: list[Record] = []
    with zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        texts = sorted(n for n in names if n.endswith(".txt"))
        anns = {n for n in names if n.endswith(".ann")}
        for orphan in sorted(anns - {t[:-4] + ".ann" for t in texts}):
            raise DataFormatError(f"{path}!{orphan}", None, "annotation file without a matching .txt")
        for txt_member in texts:
            ann_member = txt_member[:-4] + ".ann"
            if ann_member not in anns:
                raise DataFormatError(f"{path}!{txt_member}", None, "document without a matching .ann file")
            text = _read_member(zf, path, txt_member)
            ann = parse_ann(text, _read_member(zf, path, ann_member), f"{path}!{ann_member}", ann_member)
            stem = txt_member.rsplit("/", 1)[-1][:-4]
            records.append(
                RelationRecord(
                    uid=f"chia/all/{stem}",
                    origin=f"{ARCHIVE}!{txt_member}",
                    text=text,
                    entities=tuple(ann.entities),
                    relations=tuple(ann.relations),
                )
            )
    return {"all": records}

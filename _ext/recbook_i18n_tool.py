"""The Chinese edition's catalogues: merge the English into them, and check them.

    python _ext/recbook_i18n_tool.py update [--drop-obsolete]   # after extracting the .pot files
    python _ext/recbook_i18n_tool.py check                      # what CI runs (exit 1 on a problem)
    python _ext/recbook_i18n_tool.py stats                      # messages and words per page
    python _ext/recbook_i18n_tool.py compare EN_HTML ZH_HTML    # structure of the two built sites
    python _ext/recbook_i18n_tool.py figures [--update]         # labels of figures and charts

``make i18n-update`` extracts the English of every page (``sphinx-build -b gettext``) into
``_build/gettext/<page>.pot`` and runs ``update``, which merges it into
``locales/zh_CN/LC_MESSAGES/<page>.po`` (babel, the library Sphinx itself uses): a new
paragraph arrives untranslated, a changed one is marked ``#, fuzzy`` with the old English kept
beside it (``#| msgid "..."``), a removed one stays at the end as obsolete (``#~``) until
``--drop-obsolete``.

``check`` fails, for every page listed in ``locales/zh_CN/translated.txt``, on

* a message that is untranslated or fuzzy, an obsolete one, or a catalogue that does not match
  the English of the page (the English changed and ``make i18n-update`` was not run): Sphinx
  shows such text in English without a warning;
* a glossary term translated inconsistently: a message whose English uses a term of
  ``book/glossary.md`` (any of its English names, as a word) must use one of the term's Chinese
  names in its translation, or keep one of its English names as it is (AUC, MLP, logit). A deliberate exception is written into the entry as a translator
  comment ``# glossary: <English name>``.

``figures`` reads the executed notebooks (``_build/jupyter_execute``) and fails on a figure or
chart label without an entry in ``locales/zh_CN/figures.po``, a glyph no font has, a figure
without its Chinese drawing, or an entry no figure uses (``recbook/i18n.py``); ``--update`` adds
the missing labels, untranslated, and drops the unused ones. ``check`` also fails on an
untranslated or fuzzy label in that catalogue.

``compare`` checks that the two built editions have the same structure: the same pages, and on
every page the same number of sections, figures, display equations, exercises and code cells.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE = "zh_CN"
LOCALES = ROOT / "locales"
POT_DIR = ROOT / "_build" / "gettext"
CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def po_dir(language: str = LANGUAGE, locales: Path = LOCALES) -> Path:
    return locales / language / "LC_MESSAGES"


def _read(path: Path):
    from babel.messages.pofile import read_po

    with path.open("rb") as f:
        return read_po(f, locale=None)


def _write(path: Path, catalog, drop_obsolete: bool = False) -> None:
    from babel.messages.pofile import write_po

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        write_po(f, catalog, width=100, include_previous=True, ignore_obsolete=drop_obsolete,
                 omit_header=False, sort_output=False)


ENGLISH_ONLY = re.compile(r"^book/api(/|$)")
"""Pages without a catalogue: the API reference is the package's docstrings, which stay English
(like the code); its page titles and the headings around it are translated on other pages."""


def pages(pot_dir: Path) -> dict[str, Path]:
    """{page name ("book/fm"): its .pot} of an extraction, Sphinx's own static files and the
    English-only pages left out."""
    found = {p.relative_to(pot_dir).with_suffix("").as_posix(): p for p in sorted(pot_dir.rglob("*.pot"))}
    return {page: p for page, p in found.items()
            if not page.startswith("_") and not ENGLISH_ONLY.match(page)}


# ---------------------------------------------------------------------------------------------
# update
# ---------------------------------------------------------------------------------------------
HEADER = """\
# Simplified Chinese edition of recbook: {page}.
# Merged from the English by `make i18n-update`; see CONTRIBUTING.md, "Two editions".
#"""


def _quiet(catalog, page: str) -> None:
    """No guessed format flags (babel marks "{term}" python-brace-format), no dates or
    placeholders in the header: a catalogue changes only when its messages do."""
    import datetime

    for message in list(catalog) + list(catalog.obsolete.values()):
        message.flags -= {"python-format", "python-brace-format"}
    catalog.header_comment = HEADER.format(page=page)
    epoch = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    catalog.creation_date = epoch
    catalog.revision_date = epoch
    catalog.last_translator = "recbook"
    catalog.language_team = "zh_CN"
    catalog.version = "1"
    catalog.msgid_bugs_address = ""


def update(pot_dir: Path = POT_DIR, out: Path | None = None, language: str = LANGUAGE,
           drop_obsolete: bool = False) -> dict[str, str]:
    """Merge every .pot of ``pot_dir`` into its .po under ``out``; returns {page: what happened}."""
    from babel.messages.catalog import Catalog

    out = out or po_dir(language)
    done = {}
    if not pot_dir.is_dir() or not pages(pot_dir):
        raise SystemExit(f"no .pot files under {pot_dir}: extract the English first (make i18n-update)")
    for page, pot in pages(pot_dir).items():
        template = _read(pot)
        target = out / f"{page}.po"
        if target.exists():
            catalog = _read(target)
            catalog.update(template, no_fuzzy_matching=False, update_header_comment=False,
                           keep_user_comments=True)
            done[page] = "merged"
        else:
            catalog = Catalog(locale=language, project="recbook", charset="utf-8",
                              fuzzy=False)
            for message in template:
                if message.id:
                    catalog.add(message.id, "", auto_comments=message.auto_comments,
                                flags=message.flags - {"fuzzy"})
            done[page] = "created"
        catalog.fuzzy = False
        _quiet(catalog, page)
        _write(target, catalog, drop_obsolete=drop_obsolete)
    for po in sorted(out.rglob("*.po")):
        page = po.relative_to(out).with_suffix("").as_posix()
        if page not in done:
            done[page] = "no such page any more (delete the catalogue)"
    return done


# ---------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------
def translated_pages(language: str = LANGUAGE, locales: Path = LOCALES) -> list[str]:
    """Pages listed in ``locales/<lang>/translated.txt`` (one a line, # comments)."""
    path = locales / language / "translated.txt"
    if not path.is_file():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


@dataclass
class GlossaryEntry:
    english: list[str]
    chinese: list[str]


def glossary_entries(path: Path = ROOT / "book" / "glossary.md") -> list[GlossaryEntry]:
    """Entries of the ``{glossary}`` block: the unindented lines of an entry are its names."""
    text = path.read_text(encoding="utf-8")
    block = re.search(r"```\{glossary\}\n(.*?)\n```", text, flags=re.S)
    if not block:
        raise ValueError(f"{path}: no ```{{glossary}} block")
    entries, names = [], []
    for line in block.group(1).splitlines():
        if not line.strip() or line.startswith(":"):
            continue
        if line[0].isspace():
            if names:
                entries.append(GlossaryEntry([n for n in names if not CJK.search(n)],
                                             [n for n in names if CJK.search(n)]))
                names = []
        else:
            names.append(line.strip())
    return entries


def _plain(text: str) -> str:
    """Text of a message without its code, maths and link targets."""
    text = re.sub(r"`[^`]*`\{|\{(?:cite|ref|numref|doc|eq)\}`[^`]*`|\$[^$]*\$|<[^<>]*>", " ", text)
    text = re.sub(r"\{term\}`([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", text)
    text = re.sub(r"`[^`]*`", " ", text)
    return text


def glossary_problems(messages, entries: list[GlossaryEntry]) -> list[str]:
    """``messages``: (where, English, Chinese, translator comments). One line per message whose
    English uses a glossary term (any English name of an entry, as a word; the longest name
    first, so "vector retrieval" is not also "retrieval") and whose translation uses none of the
    entry's names: neither a Chinese one nor an English one kept as it is (AUC, MLP, logit)."""
    names = {name.lower() for entry in entries for name in entry.english + entry.chinese}
    by_length = sorted(((name, entry) for entry in entries if entry.chinese for name in entry.english),
                       key=lambda pair: -len(pair[0]))
    problems = []
    for where, english, chinese, comments in messages:
        if english == chinese and english.lower() in names:  # a glossary entry's own name
            continue
        plain = _plain(english)
        waived = {c.split(":", 1)[1].strip().lower() for c in comments if c.startswith("glossary:")}
        seen = set()
        for name, entry in by_length:
            pattern = rf"(?<![\w-]){re.escape(name)}(?:s|es)?(?![\w-])"
            found = re.search(pattern, plain, flags=re.I)
            if not found:
                continue
            plain = re.sub(pattern, " ", plain, flags=re.I)
            if id(entry) in seen or name.lower() in waived:
                continue
            seen.add(id(entry))
            kept = any(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", chinese, flags=re.I)
                       for n in entry.english)
            if not kept and not any(zh in chinese for zh in entry.chinese):
                problems.append(f"{where}: '{name}' is translated without "
                                f"{' or '.join(entry.chinese)}: {chinese[:60]!r}")
    return problems


def catalogue_problems(page: str, po: Path, pot: Path | None) -> list[str]:
    if not po.is_file():
        return [f"{page}: listed as translated but {po.name} does not exist (make i18n-update)"]
    catalog = _read(po)
    problems = []
    for message in catalog:
        if not message.id:
            continue
        where = f"{page}.po line {message.lineno}"
        if message.fuzzy:
            problems.append(f"{where}: fuzzy (the English changed; see #| for the old English): "
                            f"{message.id[:60]!r}")
        elif not message.string:
            problems.append(f"{where}: untranslated: {message.id[:60]!r}")
    for message in catalog.obsolete.values():
        problems.append(f"{page}.po: obsolete message (English removed; drop it with "
                        f"make i18n-update I18N_ARGS=--drop-obsolete): {message.id[:60]!r}")
    if pot is not None:
        english = {m.id for m in _read(pot) if m.id}
        have = {m.id for m in catalog if m.id}
        for missing in sorted(english - have):
            problems.append(f"{page}.po: the page's English has a message the catalogue lacks "
                            f"(run make i18n-update): {missing[:60]!r}")
        for stale in sorted(have - english):
            problems.append(f"{page}.po: message no longer in the page's English "
                            f"(run make i18n-update): {stale[:60]!r}")
    return problems


def check(pot_dir: Path | None = POT_DIR, language: str = LANGUAGE, locales: Path = LOCALES,
          glossary: Path = ROOT / "book" / "glossary.md") -> list[str]:
    """Every problem of the pages listed as translated (an empty list: all is well)."""
    problems = []
    entries = glossary_entries(glossary)
    extracted = pages(pot_dir) if pot_dir is not None and pot_dir.is_dir() else {}
    for page in translated_pages(language, locales):
        po = po_dir(language, locales) / f"{page}.po"
        if pot_dir is not None and page not in extracted:
            problems.append(f"{page}: listed as translated but not a page of the book "
                            f"(or not extracted: make i18n-update)")
        problems += catalogue_problems(page, po, extracted.get(page))
        if po.is_file():
            catalog = _read(po)
            messages = [(f"{page}.po line {m.lineno}", m.id, m.string, list(m.user_comments))
                        for m in catalog if m.id and m.string and not m.fuzzy]
            problems += glossary_problems(messages, entries)
    return problems


def stats(language: str = LANGUAGE, locales: Path = LOCALES) -> list[tuple[str, int, int, int, int]]:
    """(page, messages, translated, fuzzy, English words) per catalogue."""
    rows = []
    for po in sorted(po_dir(language, locales).rglob("*.po")):
        catalog = _read(po)
        messages = [m for m in catalog if m.id]
        rows.append((po.relative_to(po_dir(language, locales)).with_suffix("").as_posix(),
                     len(messages), sum(bool(m.string) and not m.fuzzy for m in messages),
                     sum(m.fuzzy for m in messages), sum(len(m.id.split()) for m in messages)))
    return rows


# ---------------------------------------------------------------------------------------------
# compare: the structure of the two built editions
# ---------------------------------------------------------------------------------------------
STRUCTURE = {
    "sections": r"<section\b",
    "figures": r"<img\b|<svg\b|<figure\b",
    "display equations": r'<div class="math\b',
    "exercises": r'class="[^"]*\bexercise\b',
    "code cells": r'class="cell docutils container"',
}


def structure(html: str) -> dict[str, int]:
    start = html.find("<article")
    end = html.find("</article>")
    article = html[start:end] if start >= 0 and end > start else html
    # The 本章要点 section of a chapter, with any subsection inside it, is in the English
    # edition only (the Chinese edition's translated summary says the same).
    article = _without_chinese_summary(article)
    return {what: len(re.findall(pattern, article)) for what, pattern in STRUCTURE.items()}


def _without_chinese_summary(article: str) -> str:
    while True:
        heading = re.search(r"<h[1-6][^>]*>\s*本章要点\s*<", article)
        if heading is None:
            return article
        start = article.rfind("<section", 0, heading.start())
        if start < 0:  # no enclosing section: drop the heading alone
            return article[:heading.start()] + article[heading.end():]
        depth, end = 0, len(article)
        for tag in re.finditer(r"<(/?)section\b[^>]*>", article[start:]):
            depth += -1 if tag.group(1) else 1
            if depth == 0:
                end = start + tag.end()
                break
        article = article[:start] + article[end:]


def html_pages(site: Path, skip: tuple[str, ...] = ("_", "genindex", "search", "zh")) -> dict[str, Path]:
    return {p.relative_to(site).as_posix(): p for p in sorted(site.rglob("*.html"))
            if not p.relative_to(site).parts[0].startswith(skip)}


def compare(english: Path, chinese: Path) -> list[str]:
    en, zh = html_pages(english), html_pages(chinese)
    problems = [f"{page}: only in the English edition" for page in sorted(set(en) - set(zh))]
    problems += [f"{page}: only in the Chinese edition" for page in sorted(set(zh) - set(en))]
    for page in sorted(set(en) & set(zh)):
        a = structure(en[page].read_text(encoding="utf-8"))
        b = structure(zh[page].read_text(encoding="utf-8"))
        for what in STRUCTURE:
            if a[what] != b[what]:
                problems.append(f"{page}: {a[what]} {what} in English, {b[what]} in Chinese")
        # A figure drawn by code has a Chinese drawing: the same PNG on both pages is an English
        # figure in the Chinese edition (recbook.i18n; pictures that are files of the book are
        # shared on purpose).
        shared = code_figures(en[page].read_text(encoding="utf-8")) & code_figures(zh[page].read_text(encoding="utf-8"))
        for name in sorted(shared):
            problems.append(f"{page}: figure {name} is the same drawing in both editions (no Chinese labels)")
    return problems


def code_figures(html: str) -> set[str]:
    """File names of the images that notebook outputs put on a page (content-hashed PNGs)."""
    return set(re.findall(r'<img[^>]*src="[^"]*?/([0-9a-f]{64}\.png)"', html))


# ---------------------------------------------------------------------------------------------
# figures and charts drawn by code (recbook.i18n)
# ---------------------------------------------------------------------------------------------
EXECUTED = ROOT / "_build" / "jupyter_execute"
FIGURES_HEADER = """\
# Simplified Chinese edition of recbook: the labels of figures and charts drawn by code.
# A number in a label is {0}, {1}, ... (recbook/i18n.py). New labels arrive, untranslated, with
# `python _ext/recbook_i18n_tool.py figures --update` after the book is built; see CONTRIBUTING.md.
#"""


def figures_po(language: str = LANGUAGE, locales: Path = LOCALES) -> Path:
    return locales / language / "figures.po"


def figure_catalogue_problems(po: Path, entries: list[GlossaryEntry] | None = None) -> list[str]:
    """Untranslated or fuzzy labels in the figures' catalogue, and glossary terms it translates
    inconsistently (what ``check`` adds to the pages' problems)."""
    if not po.is_file():
        return [f"{po.name} does not exist: the figures' labels have no catalogue"]
    catalog = _read(po)
    problems = []
    for message in catalog:
        if not message.id:
            continue
        if message.fuzzy:
            problems.append(f"{po.name} line {message.lineno}: fuzzy: {message.id[:60]!r}")
        elif not message.string:
            problems.append(f"{po.name} line {message.lineno}: untranslated: {message.id[:60]!r}")
    for message in catalog.obsolete.values():
        problems.append(f"{po.name}: obsolete label: {message.id[:60]!r}")
    if entries is not None:
        problems += glossary_problems([(f"{po.name} line {m.lineno}", m.id, m.string, list(m.user_comments))
                                       for m in catalog if m.id and m.string and not m.fuzzy], entries)
    return problems


def figure_records(executed: Path = EXECUTED) -> list[tuple[str, dict]]:
    """("page cell N", record) for every figure and chart of the executed notebooks."""
    import json

    from recbook.i18n import figure_metadata

    found = []
    for path in sorted(executed.rglob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        page = path.relative_to(executed).with_suffix("").as_posix()
        for i, cell in enumerate(nb.get("cells", [])):
            for record in figure_metadata(cell.get("outputs", [])):
                found.append((f"{page} cell {i}", record))
    return found


def figures(executed: Path = EXECUTED, po: Path | None = None, update: bool = False) -> list[str]:
    """Problems of the figures and charts of executed notebooks: a label without a Chinese entry,
    a glyph no font has, a figure without its Chinese drawing, a catalogue entry no figure uses.
    With ``update``, the missing labels are added to the catalogue (untranslated) and the unused
    entries dropped, and only what remains is reported."""
    po = figures_po() if po is None else po
    records = figure_records(executed)
    if not records:
        return [f"no executed notebook with figures under {executed} (build the book first)"]
    problems, wanted, used = [], {}, set()
    for where, record in records:
        if record.get("no_chinese"):
            problems.append(f"{where}: a figure without its Chinese drawing (the kernel drew none: "
                            "is the catalogue there, and Babel installed?)")
        if record.get("unreadable"):
            problems.append(f"{where}: a chart whose translation record cannot be read")
        for glyph in record.get("missing_glyphs", []):
            problems.append(f"{where}: {glyph}")
        for label in record.get("untranslated", []):
            wanted.setdefault(label, where)
        used.update(record.get("used", []))
    catalog = _read(po)
    have = {m.id for m in catalog if m.id}
    unused = sorted(have - used - set(wanted))
    if update:
        from babel.messages.catalog import Message

        for label, where in wanted.items():
            if label not in have:
                catalog[label] = Message(label, "", auto_comments=[where])
        for label in unused:
            del catalog[label]
        _quiet(catalog, "figures")
        catalog.header_comment, catalog.project = FIGURES_HEADER, "recbook"
        _write(po, catalog, drop_obsolete=True)
        return problems
    for label, where in wanted.items():
        problems.append(f"{where}: label without a Chinese entry in {po.name} (add it: "
                        f"_ext/recbook_i18n_tool.py figures --update): {label[:70]!r}")
    for label in unused:
        problems.append(f"{po.name}: no figure or chart uses this label any more "
                        f"(figures --update drops it): {label[:60]!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("update")
    up.add_argument("--pot", type=Path, default=POT_DIR)
    up.add_argument("--drop-obsolete", action="store_true")
    ck = sub.add_parser("check")
    ck.add_argument("--pot", type=Path, default=POT_DIR)
    sub.add_parser("stats")
    fg = sub.add_parser("figures")
    fg.add_argument("--executed", type=Path, default=EXECUTED)
    fg.add_argument("--update", action="store_true")
    cp = sub.add_parser("compare")
    cp.add_argument("english", type=Path)
    cp.add_argument("chinese", type=Path)
    args = parser.parse_args(argv)
    if args.command == "update":
        for page, what in update(args.pot, drop_obsolete=args.drop_obsolete).items():
            if what != "merged":
                print(f"{page}: {what}")
        return 0
    if args.command == "stats":
        print(f"{'page':32} {'messages':>8} {'translated':>10} {'fuzzy':>6} {'words':>7}")
        for row in stats():
            print(f"{row[0]:32} {row[1]:8} {row[2]:10} {row[3]:6} {row[4]:7}")
        return 0
    if args.command == "figures":
        problems = figures(args.executed, update=args.update)
        for line in problems:
            print(line, file=sys.stderr)
        if not problems:
            print(f"{len(figure_records(args.executed))} figures and charts drawn in both languages")
        return 1 if problems else 0
    if args.command == "check":
        problems = check(args.pot if args.pot.is_dir() else None)
        problems += figure_catalogue_problems(figures_po(), glossary_entries())
        listed = translated_pages()
    else:
        problems = compare(args.english, args.chinese)
        listed = None
    for line in problems:
        print(line, file=sys.stderr)
    if listed is not None and not problems:
        print(f"{len(listed)} translated page(s) in step with the English: {', '.join(listed) or '-'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

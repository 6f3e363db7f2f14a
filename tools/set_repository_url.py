"""Point the book at another repository: one command for whoever publishes it.

    python tools/set_repository_url.py https://github.com/ORG/REPO [--root .]

The URL lives in one place, ``REPOSITORY_URL`` in ``recbook/__init__.py``. The website's launch
buttons (Binder, Colab), its repository and issue buttons and ``{{ repository_url }}`` in the
Markdown pages read it when the site is built (``_ext/recbook_site.py``). Two kinds of files carry
a copy, which this command rewrites and the tests check: the README's ``git clone`` line, and the
setup cell of every notebook (rendered by ``recbook.notebook_setup``). Rebuild the site afterwards.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

URL = re.compile(r"^https://[A-Za-z0-9.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def current_url(root: Path) -> str:
    tree = ast.parse((root / "recbook" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "REPOSITORY_URL" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit("recbook/__init__.py defines no REPOSITORY_URL")


def set_url(new: str, root: Path) -> list[str]:
    """Rewrite every copy of the repository URL under ``root``; return the files changed."""
    new = new.rstrip("/")
    if new.endswith(".git"):
        new = new[:-4]
    if not URL.match(new):
        raise ValueError(f"url: expected https://HOST/OWNER/REPO (e.g. https://github.com/me/recbook), got {new!r}")
    old = current_url(root)
    changed = []
    init = root / "recbook" / "__init__.py"
    text = init.read_text(encoding="utf-8")
    updated = re.sub(r'^REPOSITORY_URL = .*$', f'REPOSITORY_URL = "{new}"', text, count=1, flags=re.M)
    if updated != text:
        init.write_text(updated, encoding="utf-8")
        changed.append("recbook/__init__.py")
    readme = root / "README.md"
    if readme.is_file() and old != new:
        text = readme.read_text(encoding="utf-8")
        if old in text:
            readme.write_text(text.replace(old, new), encoding="utf-8")
            changed.append("README.md")
    notebooks = sorted(str(p.relative_to(root)) for p in (root / "book").glob("*.ipynb"))
    if notebooks:
        # A fresh interpreter, so that recbook.REPOSITORY_URL is the new one.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
        subprocess.run([sys.executable, "-m", "recbook.notebook_setup", *notebooks], cwd=root, env=env,
                       check=True, stdout=subprocess.DEVNULL)
        changed += [nb for nb in notebooks if new in (root / nb).read_text(encoding="utf-8")]
    return changed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="the repository's URL, e.g. https://github.com/me/recbook")
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                   help="the repository's folder (default: this one)")
    args = p.parse_args(argv)
    try:
        changed = set_url(args.url, args.root.resolve())
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    print(f"repository URL is now {current_url(args.root.resolve())}; updated: {', '.join(changed) or 'nothing'}")
    print("rebuild the site (make book) for the launch buttons to follow")
    return 0


if __name__ == "__main__":
    sys.exit(main())

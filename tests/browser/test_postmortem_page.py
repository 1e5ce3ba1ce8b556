"""A postmortem as a reader opens it: the Markdown, rendered as a Markdown viewer does (relative image paths),
shows every chart from disk with no request leaving the machine, and says where its evidence came from."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import LOCAL_PREFIXES, demo_environment

pytestmark = pytest.mark.slow


def test_postmortem_markdown_and_its_charts_from_disk(tmp_path: Path, pages) -> None:
    import mistune

    command = [sys.executable, "-c", "import sys; from provkit.cli.main import main; sys.exit(main())"]
    command += ["postmortem", "--app", "Contoso SCIM App", "--demo", "--since", "3d", "--out", str(tmp_path)]
    done = subprocess.run(command, env=demo_environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    markdown = Path(done.stdout.strip().splitlines()[-1])
    text = markdown.read_text(encoding="utf-8")
    assert "**Source.**" in text and "SIMULATED tenant" in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) >= 3 and all(not re.match(r"^[a-z]+:", src) for src in images), images

    page_file = markdown.with_suffix(".html")
    page_file.write_text(f"<!DOCTYPE html><meta charset='utf-8'>{mistune.html(text)}", encoding="utf-8")
    page = pages.new("postmortem")
    outside: list[str] = []
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(LOCAL_PREFIXES) else (
        outside.append(r.request.url), r.abort()))  # fmt: skip
    page.goto(page_file.as_uri(), wait_until="load")
    sizes = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])")
    assert len(sizes) == len(images)
    assert all(width > 300 for _src, width in sizes), sizes
    assert not outside and not errors, (outside, errors)

"""README.md and docs/*.md: every relative link resolves, and the README's examples are the docs' commands.

The commands of the docs pages are what the tests run (docs/hub.md's recipe by tests/test_hub.py);
the README shows a few of them as examples, so each README example must be copied from a page,
not a variant nobody runs.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file: lower case, punctuation dropped, spaces as '-'."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", path.read_text(encoding="utf-8")), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def bash_commands(text: str) -> list[str]:
    """Commands of the ```bash blocks: continuation lines joined, comment lines dropped, spaces collapsed."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                commands.append(" ".join(command.split()))
    return commands


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_relative_links_resolve(page):
    links = [link for link in LINK.findall(prose(page.read_text(encoding="utf-8"))) if "://" not in link]
    assert links or page.name != "README.md"
    for link in links:
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {link} names no file"
        if anchor:
            assert anchor in anchors(path), f"{page.name}: {link}: no heading {anchor!r} in {path.name}"


def test_readme_examples_are_commands_of_the_docs_pages():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    examples = bash_commands(readme.split("## One example per job", 1)[1])
    docs = [c for page in PAGES[1:] for c in bash_commands(page.read_text(encoding="utf-8"))]
    assert len(examples) >= 8
    for example in examples:
        assert any(example in command for command in docs), f"README's `{example}` is in no docs page"


def documented_invocations() -> list[tuple[str, str, list[str]]]:
    """(page, command, argv) of every ``nst``, ``python app.py`` and torchrun ``-m nst_core.cli`` line of
    the pages' bash blocks, with the block's shell variables (``S="..."``) substituted."""
    found = []
    for page in PAGES:
        for block in re.findall(r"^```bash\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M):
            variables: dict[str, str] = {}
            for line in block.replace("\\\n", " ").splitlines():
                try:
                    words = shlex.split(line, comments=True)
                except ValueError:  # a quoted Python snippet spread over lines: not a command of ours
                    continue
                while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value; prefixes and assignments
                    name, _, value = words.pop(0).rstrip(";").partition("=")
                    variables[name] = value
                    words = [w for w in words if w != ";"]
                words = [w for word in words for w in substitute(word, variables).split()]
                if words[:1] == ["nst"]:
                    found.append((page.name, line, ["nst", *words[1:]]))
                elif words[:2] == ["python", "app.py"]:
                    found.append((page.name, line, ["app.py", *words[2:]]))
                elif words[:1] == ["torchrun"] and "nst_core.cli" in words:
                    found.append((page.name, line, ["nst", *words[words.index("nst_core.cli") + 1 :]]))
    return found


def substitute(word: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$([A-Z_]+)", lambda m: variables.get(m.group(1), m.group(0)), word)


def test_every_documented_command_is_accepted_as_written():
    """Each documented ``nst`` / ``app.py`` command line parses with the real parsers (flags, choices, counts).

    The parsers are the ones the commands run; running every command would take hours (releases, scans,
    real weights), so this checks what drifts when code moves: renamed or removed flags and subcommands.
    The commands that run on random weights in seconds are run by the tests of their own features.
    """
    from app import parse_args as parse_app_args
    from nst_core.cli import build_parser

    invocations = documented_invocations()
    assert len(invocations) >= 50
    for page, line, argv in invocations:
        try:
            with contextlib.redirect_stderr(io.StringIO()) as errors:
                if argv[0] == "app.py":
                    parse_app_args(argv[1:])
                else:
                    build_parser().parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{page}: `{line.strip()}` is refused: {errors.getvalue().strip().splitlines()[-1]}")


def test_the_command_check_sees_a_renamed_flag():
    """The check above fails on a flag the parser does not know."""
    from nst_core.cli import build_parser

    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        build_parser().parse_args(["stylize", "a.jpg", "b.jpg", "-o", "out.png", "--iteratons", "3"])


def python_blocks() -> list[tuple[str, str]]:
    """(page, code) of every ```python block in the README and the docs pages."""
    return [
        (page.relative_to(ROOT).as_posix(), block)
        for page in PAGES
        for block in re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)
    ]


def missing_imports(code: str) -> list[str]:
    """The ``from nst_core... import NAME`` lines of ``code`` whose module or name does not exist."""
    import ast
    import importlib

    missing = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "nst_core":
            try:
                module = importlib.import_module(node.module)
            except ImportError:
                missing.append(node.module)
                continue
            missing += [f"{node.module}.{a.name}" for a in node.names if not hasattr(module, a.name)]
    return missing


def test_python_examples_import_what_exists():
    """Every documented Python example imports names that exist where it says (the modules moved once)."""
    blocks = python_blocks()
    assert len(blocks) >= 5
    for page, code in blocks:
        assert not missing_imports(code), f"{page}: imports that do not exist: {missing_imports(code)}"
    # The check sees a stale import (load_checkpoint lives with the network, not in the format package).
    assert missing_imports("from nst_core.model.checkpoint import load_checkpoint") == [
        "nst_core.model.checkpoint.load_checkpoint"
    ]


def test_the_random_weight_python_examples_run(tmp_path, monkeypatch):
    """The examples that need no download (random weights, the bundled images) run as written."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    runnable = [(page, code) for page, code in python_blocks() if "random:" in code and "measure_speedup" not in code]
    assert {page for page, _ in runnable} >= {"docs/pruning.md", "docs/stylize.md"}
    for page, code in runnable:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, page, "exec"), {})
    assert (tmp_path / "out.png").exists()  # docs/stylize.md's result

"""The command-line reference, generated from ``fluidgrad.cli.build_parser()``.

The directive ``fluidgrad-cli`` walks the argparse parser and its subcommands and
emits one section per command: its usage, its description and a table of its
arguments (flags, help, choices, default). Help texts are shown as plain text, never
parsed as reStructuredText or Markdown, so whatever a help string holds (``|x|``,
``*``, indentation) can neither break the build nor be mangled; descriptions written
for ``RawDescriptionHelpFormatter`` keep their line breaks.
"""

from __future__ import annotations

import argparse
import contextlib
import os

from docutils import nodes
from docutils.parsers.rst import Directive


@contextlib.contextmanager
def _columns(n):
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(n)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _subcommands(parser):
    """``[(name, help, subparser)]`` of ``parser``'s subcommands, in order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            return [(name, helps.get(name), sub) for name, sub in action.choices.items()]
    return []


def _text_block(text, raw):
    """A description: a literal block when its line breaks matter, else paragraphs."""
    if raw and "\n" in text.strip("\n"):
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]
    return [nodes.paragraph(p, " ".join(p.split())) for p in text.strip().split("\n\n") if p.strip()]


def _flags(action):
    if not action.option_strings:
        return action.metavar or action.dest
    metavar = ""
    if action.nargs != 0:
        metavar = action.metavar or (action.dest.upper() if not action.choices else "{" + ",".join(
            map(str, action.choices)) + "}")
        metavar = " " + (" ".join(metavar) if isinstance(metavar, tuple) else metavar)
    return ", ".join(f"{o}{metavar}" for o in action.option_strings)


def _row(cells):
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        entry += cell if isinstance(cell, list) else [cell]
        row += entry
    return row


def _arguments_table(parser):
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
            continue
        help_text = formatter._expand_help(action) if action.help else ""
        extra = []
        if action.choices and not isinstance(action.choices, dict) and action.metavar is not None:
            extra.append("choices: " + ", ".join(map(str, action.choices)))
        if action.option_strings and action.nargs != 0 and action.default not in (None, argparse.SUPPRESS) \
                and "default" not in help_text:
            extra.append(f"default: {action.default}")
        para = nodes.paragraph()
        para += nodes.Text(help_text)
        if extra:
            para += nodes.Text((" (" if help_text else "(") + "; ".join(extra) + ")")
        flag = nodes.paragraph()
        flag += nodes.literal(_flags(action), _flags(action))
        rows.append(_row([flag, para]))
    if not rows:
        return []
    table = nodes.table()
    group = nodes.tgroup(cols=2)
    table += group
    group += nodes.colspec(colwidth=35)
    group += nodes.colspec(colwidth=65)
    head = nodes.thead()
    head += _row([nodes.paragraph(text="argument"), nodes.paragraph(text="meaning")])
    group += head
    body = nodes.tbody()
    body.extend(rows)
    group += body
    return [table]


class CliDirective(Directive):
    """``.. fluidgrad-cli::`` - the reference of every ``fluidgrad`` subcommand."""

    has_content = False

    def _section(self, title, parser, summary=None):
        env = self.state.document.settings.env
        section = nodes.section(ids=[nodes.make_id("cli-" + title)], names=[nodes.fully_normalize_name(title)])
        section += nodes.title(title, "", nodes.literal(title, title))
        if summary:
            section += nodes.paragraph(summary, summary[0].upper() + summary[1:] + ".")
        with _columns(88):
            usage = parser.format_usage().strip()
        block = nodes.literal_block(usage, usage)
        block["language"] = "text"
        section += block
        if parser.description:
            section.extend(_text_block(parser.description,
                                       parser.formatter_class is argparse.RawDescriptionHelpFormatter))
        section.extend(_arguments_table(parser))
        env.note_dependency(__file__)
        return section

    def run(self):
        from fluidgrad.cli import build_parser
        parser = build_parser()
        out = [self._section("fluidgrad", parser)]
        for name, help_text, sub in _subcommands(parser):
            out.append(self._section(f"fluidgrad {name}", sub, help_text))
        return out


def setup(app):
    app.add_directive("fluidgrad-cli", CliDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

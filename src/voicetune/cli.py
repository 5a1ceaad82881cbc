"""The `voicetune` command. A subcommand is one function that adds its parser, plus one line
in COMMANDS; it sets `run` to a callable taking the parsed args."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voicetune.errors import UserError


def view(sub: argparse._SubParsersAction) -> None:
    """voicetune view DIR: serve the pair viewer of a run, dataset or viewer folder."""
    p = sub.add_parser("view", help="browse a dataset's pairs in the HTML viewer")
    p.add_argument("path", type=Path, help="run, dataset or viewer folder")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
    p.add_argument("--no-browser", action="store_true", help="only print the URL")

    def run(args: argparse.Namespace) -> None:
        from voicetune import viewer

        viewer.serve(viewer.find(args.path), args.port, open_browser=not args.no_browser)

    p.set_defaults(run=run)


def compare(sub: argparse._SubParsersAction) -> None:
    """voicetune compare PATH...: one static HTML report comparing runs (no W&B needed)."""
    p = sub.add_parser("compare", help="write an HTML report comparing runs")
    p.add_argument("paths", type=Path, nargs="+", help="run dirs, or a multirun dir (expands to its runs)")
    p.add_argument("-o", "--out", type=Path, help="report file (default: FIRST_PATH/compare.html)")
    p.add_argument("--open", action="store_true", help="open the report in a browser")

    def run(args: argparse.Namespace) -> None:
        from voicetune.compare import build_report

        out = build_report(args.paths, args.out)
        print(out)
        if args.open:
            import webbrowser

            webbrowser.open(out.resolve().as_uri())

    p.set_defaults(run=run)


COMMANDS = (view, compare)


def parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    root = argparse.ArgumentParser(prog="voicetune", description="voicetune tools for runs and datasets")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success, 2 on a user error (printed as one line)."""
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except UserError as exc:
        print(f"voicetune {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

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


def serve(sub: argparse._SubParsersAction) -> None:
    """voicetune serve PATH: an OpenAI-compatible server for the exported model (GGUF or MLX)."""
    p = sub.add_parser("serve", help="serve an exported model on a local OpenAI-compatible endpoint")
    p.add_argument("path", type=Path, help="run dir, export folder, GGUF/MLX folder or .gguf file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--n-ctx", type=int, default=8192, help="context tokens (GGUF; draft + rewrite)")

    def run(args: argparse.Namespace) -> None:
        from voicetune.serve import serve as start

        start(args.path, args.host, args.port, args.n_ctx)

    p.set_defaults(run=run)


def rewrite(sub: argparse._SubParsersAction) -> None:
    """voicetune rewrite [FILE|-]: rewrite a draft in the author's voice through any OpenAI-compatible endpoint."""
    p = sub.add_parser("rewrite", help="rewrite a draft (file or stdin) through a served model")
    p.add_argument("draft", nargs="?", default="-", help="text file with the draft; - or nothing = stdin")
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1",
                   help="voicetune serve (default), LM Studio http://localhost:1234/v1, Ollama http://localhost:11434/v1")
    p.add_argument("--model", default="voicetune", help="model name the endpoint knows it by")
    p.add_argument("--artifact", type=Path, help="exported folder: use its persona and instruction")
    p.add_argument("--api-key-env", help="NAME of the env var holding a key (hub endpoints only)")
    p.add_argument("--max-tokens", type=int, help="cap (default: 1.5x the draft's estimated tokens)")
    p.add_argument("--temperature", type=float, default=0.0)

    def run(args: argparse.Namespace) -> None:
        from voicetune import rewrite as rw

        result = rw.rewrite(rw.read_draft(args.draft), rw.prompt_for(args.artifact), args.base_url, args.model,
                            args.api_key_env, args.max_tokens, args.temperature)
        for warning in result["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)

    p.set_defaults(run=run)


def adapter(sub: argparse._SubParsersAction) -> None:
    """voicetune adapter DIR --to mlx|peft OUT: convert a LoRA adapter between PEFT and mlx-lm."""
    p = sub.add_parser("adapter", help="convert a LoRA adapter: PEFT (CUDA/CPU runs) <-> mlx-lm (Mac)")
    p.add_argument("path", type=Path, help="a run's train/adapter folder (PEFT) or an mlx-lm adapter folder")
    p.add_argument("--to", choices=("mlx", "peft"), required=True)
    p.add_argument("out", type=Path, help="folder to write the converted adapter into")

    def run(args: argparse.Namespace) -> None:
        from voicetune.backends.mlx_peft import MLX_WEIGHTS, PEFT_WEIGHTS, mlx_to_peft, peft_to_mlx

        source = PEFT_WEIGHTS if args.to == "mlx" else MLX_WEIGHTS
        if not (args.path / source).is_file():
            raise UserError(f"{args.path}: no {source}; --to {args.to} converts a "
                            f"{'PEFT' if args.to == 'mlx' else 'mlx-lm'} adapter folder")
        (peft_to_mlx if args.to == "mlx" else mlx_to_peft)(args.path, args.out)
        use = "mlx_lm.generate --model <MLX base> --adapter-path" if args.to == "mlx" else "PeftModel.from_pretrained(base,"
        print(f"wrote {args.out} ({use} {args.out})")

    p.set_defaults(run=run)


COMMANDS = (view, compare, serve, rewrite, adapter)


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

"""The `pendant` command.

Every error the pendant raises on purpose ends here as one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import sys
from pathlib import Path

from pendant import __version__
from pendant.app.services import SERVICES
from pendant.core.config import Config, load_config
from pendant.core.errors import PendantError

log = logging.getLogger(__name__)

EXIT_ERROR = 2


def _parser() -> tuple[argparse.ArgumentParser, set[str]]:
    """The parser, and the names of its subcommands."""
    p = argparse.ArgumentParser(prog="pendant", description=__doc__.splitlines()[0])
    p.add_argument(
        "--version",
        action="store_true",
        help="print the version (with --verbose: the lock, the deciding packages, the manifest)",
    )
    p.add_argument("--config", type=Path, help="TOML config (default /etc/pendant/pendant.toml)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="all components in one process")
    service = sub.add_parser("service", help="one component, as its systemd unit runs it")
    service.add_argument("name", choices=list(SERVICES))
    listen = sub.add_parser("listen", help="WAV files in, one JSON line per published intent out")
    listen.add_argument("files", nargs="+", type=Path)
    look = sub.add_parser("look", help="image files in, one JSON line per scene the eyes see")
    look.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    sub.add_parser(
        "prepare",
        help="the eyes' models optimised for this board and kept, so each capture loads them "
        "faster (pendant-eyes-prepare.service runs it at boot)",
    )
    intents = sub.add_parser("intents", help="what the pendant understands in this home")
    intents.add_argument(
        "sentences", nargs="*", help="sentences to try ('-' reads them from stdin, one a line)"
    )
    for verb, text in (
        ("pair", "pair a phone: its own account and a link/QR code (--list: the paired phones)"),
        ("unpair", "revoke a paired phone"),
    ):
        paired = sub.add_parser(verb, help=text, add_help=False)
        paired.add_argument("pairing_args", nargs=argparse.REMAINDER)
    models = sub.add_parser(
        "models", help="fetch or verify models (see models/README.md)", add_help=False
    )
    models.add_argument("models_args", nargs=argparse.REMAINDER)
    discovery = sub.add_parser(
        "discovery", help="the Home Assistant discovery this config publishes, as JSON lines"
    )
    # Also after the subcommand; SUPPRESS keeps it from hiding a --config given before it.
    discovery.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML config")
    sub.add_parser("config-docs", help="print the config reference as a Markdown table")
    config = sub.add_parser("config", help="check a pendant.toml as the SD card carries it")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser(
        "check",
        help="FILE merged over the device's config (--config, else /etc/pendant/pendant.toml "
        "if it exists, else the device config a new pendant starts from): one line a problem",
    )
    check.add_argument("file", type=Path, metavar="FILE")
    check.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML config")
    sub.add_parser(
        "doctor", help="what is wrong: hardware, models, clock, power, broker logins, the link"
    )
    home = sub.add_parser("home", help="the home's names from Home Assistant")
    home_sub = home.add_subparsers(dest="home_command", required=True)
    imports = home_sub.add_parser(
        "import",
        help="Home Assistant's areas, floors and entities exposed to Assist, as the TOML "
        "[home] of pendant.toml (read over its WebSocket API)",
    )
    imports.add_argument(
        "--url",
        required=True,
        help="Home Assistant's address, e.g. http://homeassistant.local:8123",
    )
    imports.add_argument(
        "--token-file",
        type=Path,
        required=True,
        help="file (chmod 600) holding an administrator's long-lived access token",
    )
    imports.add_argument("-o", "--output", type=Path, help="write the TOML here, not to stdout")
    imports.add_argument("--cafile", type=Path, help="CA certificate (PEM) for an https --url")
    from pendant.app import voices

    voices.add_parser(sub)
    return p, set(sub.choices)


def _print_version(verbose: bool) -> int:
    if not verbose:
        print(f"pendant {__version__}")
        return 0
    from pendant.app.build_info import collect

    print("\n".join(collect().lines()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The `pendant` command: runs what `argv` (the process's arguments if None) asks and returns
    the exit status; a PendantError is printed as one line, not a traceback."""
    # Commands that hand their arguments to another module's own parser (so `--help` and
    # options reach it): argparse's REMAINDER refuses a first argument that starts with '-'.
    parser, commands = _parser()
    # Only options before the subcommand: after it, "--version" belongs to the subcommand
    # (or is a sentence), and the subcommand argparse requires would refuse a bare --version.
    given = sys.argv[1:] if argv is None else argv
    head = list(itertools.takewhile(lambda a: a not in commands, given))
    if "--version" in head:
        return _print_version(verbose="-v" in head or "--verbose" in head)
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("models", "pair", "unpair"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    for name in ("models_args", "pairing_args"):
        if hasattr(args, name):
            # Everything after the subcommand, in its order: argparse splits `pair --name anna`
            # into the remainder ["anna"] and the unknown ["--name"], and joining those back
            # put the value before its option.
            setattr(args, name, given[len(head) + 1 :])
    from pendant.core.logs import setup_logging

    setup_logging(args.verbose)
    try:
        return _dispatch(args)
    except PendantError as exc:
        print(f"pendant: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("pair", "unpair"):
        from pendant.pairing.accounts import main as pairing_main

        verb = "pair" if args.command == "pair" else "revoke"
        return pairing_main([verb, *args.pairing_args])
    if args.command == "models":
        from pendant.setup.fetch_models import main as models_main

        extra = ["--config", str(args.config)] if args.config else []
        return models_main([*args.models_args[:1], *extra, *args.models_args[1:]])
    if args.command == "config":
        return _config_check(args.file, args.config)
    if args.command == "config-docs":
        from pendant.core.config import config_reference

        print("| key | type | default | meaning |\n|---|---|---|---|")
        print("\n".join(config_reference()))
        return 0
    if args.command == "home":
        from pendant.app.home_import import run as home_import

        return home_import(args.url, args.token_file, args.output, args.cafile)
    config = load_config(args.config)
    if args.command == "run":
        return asyncio.run(_run(config, args.config))
    if args.command == "service":
        from pendant.app.services import serve

        asyncio.run(serve(args.name, config, args.config))
        return 0
    if args.command == "listen":
        from pendant.app.replay import listen

        return asyncio.run(listen(config, args.files))
    if args.command == "intents":
        return _intents(config, args.sentences)
    if args.command == "voice":
        from pendant.app.voices import run as voice_run

        return voice_run(config, args)
    if args.command == "doctor":
        from pendant.app.doctor import main as doctor_main

        return doctor_main(config)
    if args.command == "look":
        from pendant.eyes.look import look

        return look(config, args.images)
    if args.command == "prepare":
        from pendant.eyes.look import prepare

        return prepare(config)
    if args.command == "discovery":
        from pendant.link.discovery import messages

        for topic, payload in messages(config):
            print(json.dumps({"topic": topic, "payload": json.loads(payload)}))
        return 0
    raise AssertionError(args.command)


def _config_check(card: Path, config: Path | None) -> int:
    """`pendant config check`: exit 0 and one OK line, or 1 and one line per problem."""
    from pendant.core.config import card_base, check_card

    base = card_base(config)
    problems = check_card(card, base)
    for line in problems:
        print(line)
    if problems:
        return 1
    print(f"{card}: OK, merged over {base}")
    return 0


async def _run(config: Config, config_path: Path | None) -> int:
    """`pendant run`: every component in this process, until the audio ends or a signal."""
    from pendant.app.one_process import Pendant
    from pendant.core.supervise import supervise

    await supervise(Pendant(config, config_path))
    return 0


def _intents(config: Config, sentences: list[str]) -> int:
    import numpy as np

    from pendant.ears.understand.grammar import build_grammar
    from pendant.ears.understand.nlu import IntentParser

    parser = IntentParser(config)
    grammar = build_grammar(config)
    if not sentences:
        examples: dict[str, set[str]] = {}
        for sentence in grammar.sample(np.random.default_rng(0), 3000):
            match = parser.parse(sentence)
            if match is not None and len(examples.setdefault(match.name, set())) < 3:
                examples[match.name].add(sentence)
        for name, some in sorted(examples.items()):
            print(f"{name}: " + " | ".join(sorted(some)))
        print(f"({grammar.size:,} sentences in this home's closed set)")
        return 0
    from pendant.core.names import normalize

    # "heard": whether the sentence is in the closed set, the only sentences the recogniser
    # can output. One the NLU understands but the ears cannot hear is never acted on.
    lines = sys.stdin if sentences == ["-"] else sentences
    for line in lines:
        text = line.strip()
        if not text:
            continue
        heard = grammar.accepts(normalize(text))
        match = parser.parse(text)
        if match is None:
            print(json.dumps({"text": text, "heard": heard, "intent": None}))
        else:
            slots = {s.name: s.value for s in match.slots}
            print(json.dumps({"text": text, "heard": heard, "intent": match.name, "slots": slots}))
    return 0

"""`pendant voice`: the voices enrolled for `[speaker]`, on the device (issue 19).

`enrol NAME FILE...` embeds each sound file (one utterance each, the wearer speaking) and keeps
their mean as NAME's voice if they sound like one voice (`one_voice`: a file unlike the others
may be left out, and said so; recordings of two people are refused); `list` prints the names;
`forget NAME` / `forget --all` deletes.
The file is the ears' (`pendant.ears.speaker.store`): run as root or as the ears' user on the
pendant, where the running ears take a change at their next utterance. Spoken enrolment, from
the microphone, is the phone app's "read these five sentences" (the `voice` command), which
the ears run, as they hold the microphone.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pendant.core.config import Config
from pendant.core.errors import PendantError
from pendant.core.events import ENROL_MIN_UTTERANCES, VOICE_NAME_PATTERN

if TYPE_CHECKING:
    from pendant.ears.speaker.store import VoiceStore


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    voice = sub.add_parser("voice", help="the wearer's enrolled voices ([speaker])")
    voice.add_argument(
        "--state-dir",
        type=Path,
        help="the ears' state directory (default: $STATE_DIRECTORY, /var/lib/pendant-ears, "
        "else ~/.local/state/pendant/ears)",
    )
    verbs = voice.add_subparsers(dest="voice_command", required=True)
    enrol = verbs.add_parser("enrol", help="enrol NAME from sound files, one utterance each")
    enrol.add_argument("name")
    enrol.add_argument("files", nargs="+", type=Path, metavar="FILE")
    verbs.add_parser("list", help="the enrolled voices' names")
    forget = verbs.add_parser("forget", help="forget one voice, or --all")
    forget.add_argument("name", nargs="?")
    forget.add_argument("--all", action="store_true", help="forget every voice")


def run(config: Config, args: argparse.Namespace) -> int:
    import re

    from pendant.ears.speaker.store import VoiceStore

    store = VoiceStore(args.state_dir)
    if args.voice_command == "list":
        for name in store.names():
            print(name)
        return 0
    if args.voice_command == "forget":
        if args.all == (args.name is not None):
            raise PendantError("voice forget: give a NAME or --all, not both")
        if args.all:
            store.forget_all()
            print(f"forgot every voice ({store.path} deleted)")
            return 0
        if store.forget(args.name) is None:
            raise PendantError(f"voice forget: no voice named {args.name!r} (pendant voice list)")
        print(f"forgot {args.name}")
        return 0
    if not re.fullmatch(VOICE_NAME_PATTERN, args.name):
        raise PendantError(
            f"voice enrol: {args.name[:40]!r} is no name: a letter, then up to 31 letters, "
            "digits, spaces, ' _ or -"
        )
    return _enrol(config, store, args.name, args.files)


def _enrol(config: Config, store: VoiceStore, name: str, files: list[Path]) -> int:
    from pendant.ears.audio.wav import read_audio
    from pendant.ears.speaker.check import load_encoder
    from pendant.ears.speaker.store import centroid, one_voice

    encoder, _ = load_encoder(config)
    embeddings, heard = [], []
    for path in files:
        embedding = encoder.embed(read_audio(path))
        if embedding is None:
            print(f"{path}: too little speech, left out")
            continue
        embeddings.append(embedding)
        heard.append(path)
    if len(embeddings) < ENROL_MIN_UTTERANCES:
        raise PendantError(
            f"voice enrol: {len(embeddings)} of the files hold enough speech, "
            f"{ENROL_MIN_UTTERANCES} are needed (five sentences of a few seconds each)"
        )
    kept = one_voice(embeddings)
    if kept is None:
        raise PendantError(
            f"voice enrol: the recordings do not sound like one voice: record {name} again, "
            "alone and somewhere quieter"
        )
    for k, path in enumerate(heard):
        if k not in kept:
            print(f"{path}: not like the others (another voice?), left out")
    store.add(name, centroid([embeddings[k] for k in kept]), len(kept))
    print(f"enrolled {name} from {len(kept)} utterances ({store.path}, 0600)")
    return 0

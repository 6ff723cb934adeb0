"""pendant-ears: the microphone, turned into intents on the device-local bus.

    audio/       where sound comes from (the mic, or WAV files in simulation)
    vad.py       cutting speech into utterances (webrtcvad, then Silero)
    asr/         recognisers constrained to the closed set (pocketsphinx, whisper, hama) and the
                 pronunciations of the home's words
    understand/  the closed set (grammar), the intents it means (nlu), and the wearer's
                 sentences checked
    listener.py  one utterance at a time: VAD, recogniser, NLU, events
    service.py   the systemd service around it: the bus, commands, config changes

It holds raw audio, so it has no network (services/pendant-ears.service).
"""

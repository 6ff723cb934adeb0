"""Who is speaking: a voice embedding on the device (Resemblyzer's GE2E encoder, no torch).

`encoder.VoiceEncoder` turns an utterance into a 256-float voiceprint; `encoder.similarity`
compares two; `encoder.DEFAULT_THRESHOLD` is where a voice counts as an enrolled one. Voiceprints
are biometric data: they stay on the device. `store` keeps the enrolled voices (0600, in the
ears' state directory), `check` checks utterances against them and enrols new ones.
"""

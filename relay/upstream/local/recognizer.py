"""Speech recognition for the local server: pocketsphinx's bundled US English model.

Whatever transcription model a session names (``whisper-1``, ``gpt-4o-transcribe``...),
this is what does the work: a small, offline, CPU-only recognizer that ships its acoustic
model, language model and dictionary inside its wheel. It is no match for a hosted model,
but it hears clear English well enough to try a voice app (and to drive function tools by
their names).

:class:`Recognizer` holds one pocketsphinx decoder (about 90 MB, 0.7 s of CPU to build),
so build one per worker and keep it. Decoding holds the GIL for the whole utterance
(measured: a 16 s utterance stalled an event loop for 5.7 s when run in a thread), so the
local server runs it in worker processes (:mod:`.workers`), never on its event loop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...audio import RATE
from ...audio.resample import resample_pcm

#: The acoustic model's rate.
MODEL_RATE = 16000

#: Search settings, measured on 18 eSpeak NG sentences (102 words): pocketsphinx's
#: defaults got 39 words right for 0.89 s of CPU per second of audio; these, 38 for 0.43 s
#: (at most 3000 HMMs and 10 words per frame, no flat-lexicon second pass).
DECODER_CONFIG: dict[str, Any] = {
    "loglevel": "FATAL",
    "maxhmmpf": 3000,
    "maxwpf": 10,
    "fwdflat": False,
}

#: Peak of the dither added before decoding, in LSB. Digital silence (synthetic speech,
#: a muted microphone) gives the feature extractor log(0) frames that throw recognition
#: off; ±2 LSB of noise, far below any microphone's own, fixes that. Seeded, so one audio
#: always gives one transcript.
DITHER_LSB = 2


class Recognizer:
    """One pocketsphinx decoder: 24 kHz PCM16 in, lower-case words out."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder  # the `speech` extra; only workers need it

        self._decoder = Decoder(**DECODER_CONFIG)

    def transcribe(self, pcm: bytes) -> str:
        """The words heard in ``pcm`` (24 kHz mono PCM16), space-separated; "" for none."""
        if not self._decode(pcm):
            return ""
        hypothesis = self._decoder.hyp()
        return " ".join(str(hypothesis.hypstr).split()) if hypothesis is not None else ""

    def transcribe_scored(self, pcm: bytes) -> list[tuple[str, float]]:
        """The words heard in ``pcm``, each with its natural log posterior probability
        (pocketsphinx's word confidence): what a transcription's ``logprobs`` report."""
        if not self._decode(pcm):
            return []
        scored = []
        for segment in self._decoder.seg():
            word = str(segment.word)
            if word.startswith(("<", "[", "+")):  # <s>, </s>, <sil>, [NOISE], +fillers+
                continue
            # "really(2)": the dictionary's second pronunciation of "really".
            word = word.split("(", 1)[0]
            scored.append((word, math.log(max(float(segment.prob), 1e-12))))
        return scored

    def _decode(self, pcm: bytes) -> bool:
        audio = _dithered(resample_pcm(pcm, RATE, MODEL_RATE))
        if not audio:
            return False
        self._decoder.start_utt()
        # One call over the whole utterance: batch cepstral mean normalization, which
        # recognizes better than the live estimate a chunked feed would use.
        self._decoder.process_raw(audio, full_utt=True)
        self._decoder.end_utt()
        return True


def _dithered(pcm: bytes) -> bytes:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    noise = np.random.default_rng(0).integers(-DITHER_LSB, DITHER_LSB + 1, samples.size)
    return bytes(np.clip(samples + noise, -32768, 32767).astype("<i2").tobytes())

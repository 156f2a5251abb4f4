"""Speech synthesis for the local server: eSpeak NG, from the ``espeakng-loader`` wheel.

The wheel carries ``libespeak-ng`` and its data; this module drives the library's C API
(``speak_lib.h``) through ctypes in synchronous mode: text in, 16-bit mono samples out
through a callback, at the library's own rate (22 050 Hz), resampled to the session's
24 kHz. It is fast (about 2 ms of CPU per second of speech), robotic and intelligible.

The session's voice names map onto eSpeak voices (:data:`ESPEAK_VOICES`); its ``speed``
onto words per minute (:func:`words_per_minute`). The library keeps one global state per
process, so a process holds one :class:`Synthesizer` and uses it from one thread at a
time (the local server's worker processes do exactly that).
"""

from __future__ import annotations

import ctypes
from typing import Any

from ...audio import RATE, SAMPLE_BYTES
from ...audio.resample import resample_pcm
from ...errors import SpeechError

#: The hosted service's voices, onto eSpeak NG's US English with one variant each. The
#: Klatt variants were the ones pocketsphinx understood best (28 of 44 words for klatt3,
#: against 18 for the plain voice), so the default voice is one of them.
ESPEAK_VOICES: dict[str, str] = {
    "alloy": "en-us+klatt3",
    "ash": "en-us+klatt6",
    "ballad": "en-us+klatt2",
    "coral": "en-us+f2",
    "echo": "en-us+klatt",
    "sage": "en-us+f5",
    "shimmer": "en-us+f1",
    "verse": "en-us+m5",
    "marin": "en-us+f3",
    "cedar": "en-us+m1",
}
DEFAULT_VOICE = "alloy"

#: eSpeak NG's default rate, what ``speed`` 1.0 means, and the bounds it accepts.
WORDS_PER_MINUTE = 175
MIN_WORDS_PER_MINUTE = 80
MAX_WORDS_PER_MINUTE = 450

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_RATE = 1
_EE_OK = 0

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.c_void_p)


def espeak_voice(voice: Any) -> str:
    """The eSpeak voice for a session's ``audio.output.voice``: a known voice's own, else
    the default's (custom voices, ``{"id": ...}``, sound like the default)."""
    name = voice if isinstance(voice, str) else DEFAULT_VOICE
    return ESPEAK_VOICES.get(name.lower(), ESPEAK_VOICES[DEFAULT_VOICE])


def words_per_minute(speed: Any) -> int:
    """eSpeak's rate for a session's ``audio.output.speed`` (1.0: its normal pace)."""
    factor = float(speed) if isinstance(speed, int | float) and not isinstance(speed, bool) \
        else 1.0
    return min(max(round(WORDS_PER_MINUTE * factor), MIN_WORDS_PER_MINUTE),
               MAX_WORDS_PER_MINUTE)


class Synthesizer:
    """The eSpeak NG library, initialized: :meth:`synthesize` speaks text as 24 kHz PCM16."""

    def __init__(self) -> None:
        import espeakng_loader  # the `speech` extra; only workers need it

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synchronize.argtypes = []
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise SpeechError("eSpeak NG did not initialize (its data is missing?)")
        self.native_rate: int = rate
        self._lib = lib
        self._samples: list[bytes] = []
        # Kept on the instance: the library calls it for as long as the process lives.
        self._callback = _SynthCallback(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def synthesize(self, text: str, voice: str = ESPEAK_VOICES[DEFAULT_VOICE],
                   rate: int = WORDS_PER_MINUTE) -> bytes:
        """``text`` spoken by the eSpeak ``voice`` at ``rate`` words per minute, as 24 kHz
        mono PCM16 (b"" for blank text)."""
        if not text.strip():
            return b""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise SpeechError(f"eSpeak NG has no voice {voice!r}")
        self._lib.espeak_SetParameter(_RATE, rate, 0)
        self._samples = []
        encoded = text.encode()
        status = self._lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0,
                                        _CHARS_UTF8 | _ENDPAUSE, None, None)
        self._lib.espeak_Synchronize()
        if status != _EE_OK:
            raise SpeechError(f"eSpeak NG could not speak (error {status})")
        pcm = b"".join(self._samples)
        self._samples = []
        return resample_pcm(pcm, self.native_rate, RATE)

    def _collect(self, wav: Any, count: int, events: Any) -> int:
        if wav and count > 0:
            self._samples.append(ctypes.string_at(wav, count * SAMPLE_BYTES))
        return 0  # go on

"""Stereo uploads diarized channel by channel, with the real diarizer on real voices."""

import io

import numpy as np
import pytest

from tests.support.audio import call_recording, pcm_wav
from tests.support.engines import FIXTURES, load_clip
from whisper_api.audio import decode_audio
from whisper_api.diarization.channels import ChannelDecoder, diarize_stereo, frame_power, is_mix, joined
from whisper_api.diarization.diarizer import Diarization, Diarizer, Turn
from whisper_api.diarization.speakers import speaker_of


def _channels(data: bytes) -> tuple[np.ndarray, list[int], ChannelDecoder]:
    """The mix, and a channel decoder that records which channels it was asked for."""
    asked: list[int] = []

    def channel(index: int) -> np.ndarray:
        asked.append(index)
        return decode_audio(io.BytesIO(data), 60, channel=index)

    return decode_audio(data, 60), asked, channel


def test_a_turn_spoken_over_another_is_found_on_its_own_channel(diarizer: Diarizer) -> None:
    """The right channel's reader speaks 4.0-10.6 s, all of it over the left's 0-16.7 s: mixed
    down, that is one stretch of speech; channel by channel it is two speakers at once."""
    mix, asked, channel = _channels(call_recording(delay_s=4.0))
    result = diarize_stereo(diarizer, mix, channel)
    assert asked == [0, 1]
    assert result.speaker_count == 2
    (left,) = [turn for turn in result.turns if turn.channel == 0]
    (right,) = [turn for turn in result.turns if turn.channel == 1]
    assert left.speaker != right.speaker
    assert left.start < 0.5 and left.end > 16.0
    assert right.start == pytest.approx(4.0, abs=0.4) and right.end == pytest.approx(10.6, abs=0.5)
    assert result.levels is not None and result.levels.shape[0] == 2


def test_mono_stored_as_stereo_is_diarized_once(diarizer: Diarizer) -> None:
    data = (FIXTURES / "stereo_44k.mp3").read_bytes()
    mix, asked, channel = _channels(data)
    assert is_mix(decode_audio(data, 60, channel=1), mix)
    result = diarize_stereo(diarizer, mix, channel)
    assert asked == [0]  # the second channel is never decoded
    assert result.turns == diarizer.diarize(mix).turns and result.levels is None


def test_one_voice_on_both_channels_is_one_speaker(diarizer: Diarizer) -> None:
    """Crosstalk: the same reader on the right, 10 dB quieter and 5 ms later."""
    voice = load_clip("long.ogg")
    echo = 0.3 * np.concatenate([np.zeros(80, np.float32), voice])
    data = pcm_wav(voice, echo)
    mix, asked, channel = _channels(data)
    assert not is_mix(decode_audio(data, 60, channel=0), mix)
    result = diarize_stereo(diarizer, mix, channel)
    assert asked == [0, 1]
    assert result.speaker_count == 1


def test_words_spoken_at_once_go_to_the_louder_channel() -> None:
    turns = [Turn(0.0, 10.0, speaker=0, channel=0), Turn(2.0, 6.0, speaker=1, channel=1)]
    quiet, loud = np.full(50 * 10, 0.01, np.float32), np.full(50 * 10, 0.01, np.float32)
    loud[50 * 3 : 50 * 5] = 0.5  # the right channel is loud 3-5 s
    levels = np.stack([quiet, loud])
    assert speaker_of(3.5, 4.0, turns, levels) == 1
    assert speaker_of(5.5, 5.9, turns, levels) == 0  # both heard, the left louder
    assert speaker_of(7.0, 8.0, turns, levels) == 0  # the left alone
    assert speaker_of(3.5, 4.0, turns) == 0  # without levels: the most overlap, as for mono


def test_frame_power_is_each_20_ms_frames_mean_power() -> None:
    audio = np.concatenate([np.full(320, 0.5, np.float32), np.zeros(320, np.float32), np.full(10, 1.0)])
    assert frame_power(audio) == pytest.approx([0.25, 0.0, 10 / 320])


def test_joined_keeps_each_channels_speakers_apart() -> None:
    first, second = np.eye(192, dtype=np.float32)[:2]
    left = Diarization([Turn(0, 2, 0), Turn(3, 4, 1)], np.stack([first, second]))
    right = Diarization([Turn(1, 3.2, 0)], np.stack([second]))  # the left's second voice: crosstalk
    result = joined([left, right], np.zeros((2, 250), np.float32), merge_similarity=0.8)
    assert result.speaker_count == 2
    assert [(turn.start, turn.end, turn.speaker, turn.channel) for turn in result.turns] == [
        (0, 2, 0, 0),
        (1, 4, 1, 1),
    ]

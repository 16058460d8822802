"""`keywords[]` → faster-whisper's hotwords; refused on openai-whisper, which has none."""

import pytest

from whisper_api.errors import ApiError
from whisper_api.routes.audio import check_keywords


def test_keywords_are_refused_on_openai_whisper_naming_the_field(engines) -> None:
    assert check_keywords([" ComfyUI ", ""], engines["faster-whisper"]) == ["ComfyUI"]
    with pytest.raises(ApiError) as raised:
        check_keywords(["ComfyUI"], engines["openai-whisper"])
    assert (raised.value.body.param, raised.value.body.code) == ("keywords[]", "unsupported_parameter")
    assert check_keywords([], engines["openai-whisper"]) == []

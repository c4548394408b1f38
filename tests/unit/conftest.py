"""Both imaging engines run the same imaging tests: ``process`` is parametrised over them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.imaging import ImagingOptions, ProcessedImage, parse_renditions, process_image
from chalicelib.imaging.model import ENGINES

Process = Callable[..., ProcessedImage]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def process(engine: str) -> Process:
    """``process(data, renditions="t=60", **options)`` on the engine under test."""

    def run(data: bytes, renditions: str = "t=60", **options: Any) -> ProcessedImage:
        return process_image(
            data, ImagingOptions(parse_renditions(renditions), engine=engine, **options)
        )

    return run

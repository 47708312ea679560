"""Brand images: the files Home Assistant 2026.3+ serves from brand/ and HACS looks for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
BRAND = ROOT / "custom_components" / "iot_bridge" / "brand"
# The eight names Home Assistant's brands proxy accepts; the dark_ ones for dark themes.
NAMES = {
    f"{dark}{kind}{hidpi}.png"
    for dark in ("", "dark_")
    for kind in ("icon", "logo")
    for hidpi in ("", "@2x")
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_brand_folder_has_exactly_the_served_names() -> None:
    """Every name is one Home Assistant serves, and all eight are there (icon.png first of
    all: HACS's validation looks for it)."""
    assert {path.name for path in BRAND.iterdir()} == NAMES
    try:
        from homeassistant.components.brands.const import (  # type: ignore[import-not-found, unused-ignore]
            ALLOWED_IMAGES,
        )
    except ImportError:  # Home Assistant before 2026.3 has no local brand images
        return
    assert set(ALLOWED_IMAGES) == NAMES


@pytest.mark.parametrize("name", sorted(NAMES))
def test_brand_image_format(name: str) -> None:
    """PNG with an alpha channel, transparent corners, trimmed, and the brands sizes: icons
    256/512 px square, logos 128-256/256-512 px on the shortest side."""
    path = BRAND / name
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.mode == "RGBA"
        width, height = image.size
        corners = [(0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)]
        assert all(image.getpixel(corner)[3] == 0 for corner in corners)  # type: ignore[index]
        # No empty margin: the drawing touches both edges of one direction at least.
        left, top, right, bottom = image.getbbox() or (0, 0, 0, 0)
        assert (left, right) == (0, width) or (top, bottom) == (0, height)
    hidpi = "@2x" in name
    if "icon" in name:
        assert image.size == ((512, 512) if hidpi else (256, 256))
    else:
        shortest = min(image.size)
        assert (256 <= shortest <= 512) if hidpi else (128 <= shortest <= 256)
        assert width > height  # a logo is landscape


def test_brand_images_are_the_scripts() -> None:
    """The committed images are what scripts/brand_images.py draws (sizes and modes)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "brand_images.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr

"""Draw IoT Bridge's brand images into custom_components/iot_bridge/brand/.

    .venv/bin/python scripts/brand_images.py [--check]

The mark is a bridge: an arch carrying three nodes (one per protocol: MQTT, CoAP, LwM2M)
over a deck, with a check badge for confirmed commands. Everything is drawn here from
shapes (and Pillow's bundled font for the logo's name), four times larger than needed and
scaled down, so the images are smooth. Each image has a transparent background and no
empty margin (the brands rules: icons square 256/512 px, logos 128-256/256-512 px on the
shortest side). The dark_ variants use lighter colours for dark themes.

--check draws everything in memory and fails if a committed image differs in size or mode
(pixels may differ slightly between Pillow versions).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

BRAND = Path(__file__).resolve().parent.parent / "custom_components" / "iot_bridge" / "brand"
SUPERSAMPLE = 4
NAME = "IoT Bridge"

# (arch and deck, the three nodes, badge, badge's tick, name) for light and dark themes.
PALETTES = {
    "": ("#1f4e79", ("#2e8bc0", "#f29f05", "#7a4fd1"), "#2e9d4f", "#ffffff", "#1f4e79"),
    "dark_": ("#9cc9f0", ("#5fb6ec", "#ffc04d", "#b39cf0"), "#4cc774", "#0d1b2a", "#e8f1fa"),
}


def _mark(size: int, palette: tuple[str, tuple[str, str, str], str, str, str]) -> Image.Image:
    """The square mark, drawn at size x size (already supersampled)."""
    structure, nodes, badge, tick, _ = palette
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    unit = size / 100
    line = round(7 * unit)
    # Arch: the upper half of an ellipse from pillar to pillar.
    draw.arc(
        (8 * unit, 22 * unit, 92 * unit, 102 * unit), start=180, end=360, fill=structure, width=line
    )
    # Deck and pillars.
    draw.rounded_rectangle(
        (2 * unit, 60 * unit, 98 * unit, 68 * unit), radius=round(4 * unit), fill=structure
    )
    for x in (12, 88):
        draw.rounded_rectangle(
            ((x - 4) * unit, 60 * unit, (x + 4) * unit, 86 * unit),
            radius=round(3 * unit),
            fill=structure,
        )
    # Hangers from the arch to the deck, and the three protocol nodes on the arch.
    for x, y, colour in ((28, 35, nodes[0]), (50, 27, nodes[1]), (72, 35, nodes[2])):
        draw.line((x * unit, y * unit, x * unit, 60 * unit), fill=structure, width=round(3 * unit))
        radius = 9 * unit
        draw.ellipse(
            (x * unit - radius, y * unit - radius, x * unit + radius, y * unit + radius),
            fill=colour,
            outline=structure,
            width=round(2.5 * unit),
        )
    # The confirmation badge, bottom right.
    draw.ellipse((64 * unit, 70 * unit, 94 * unit, 100 * unit), fill=badge)
    draw.line(
        [(71 * unit, 85 * unit), (77 * unit, 91 * unit), (87 * unit, 78 * unit)],
        fill=tick,
        width=round(4.5 * unit),
        joint="curve",
    )
    return image


def _trim_square(image: Image.Image) -> Image.Image:
    """Cut empty margins, then centre the content on a transparent square."""
    content = image.crop(image.getbbox())
    side = max(content.size)
    square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    square.paste(content, ((side - content.width) // 2, (side - content.height) // 2))
    return square


def icon(px: int, prefix: str) -> Image.Image:
    """Square icon of px x px."""
    big = _trim_square(_mark(px * SUPERSAMPLE, PALETTES[prefix]))
    return big.resize((px, px), Image.Resampling.LANCZOS)


def logo(height: int, prefix: str) -> Image.Image:
    """The mark and the name side by side, height px high, trimmed."""
    palette = PALETTES[prefix]
    tall = height * SUPERSAMPLE
    mark = _trim_square(_mark(tall, palette)).resize((tall, tall), Image.Resampling.LANCZOS)
    font = ImageFont.load_default(size=round(tall * 0.42))
    left, top, right, bottom = font.getbbox(NAME, stroke_width=round(tall * 0.012))
    gap = round(tall * 0.12)
    canvas = Image.new("RGBA", (tall + gap + right - left, tall), (0, 0, 0, 0))
    canvas.paste(mark, (0, 0))
    ImageDraw.Draw(canvas).text(
        (tall + gap - left, (tall - (bottom - top)) // 2 - top),
        NAME,
        font=font,
        fill=palette[4],
        stroke_width=round(tall * 0.012),
        stroke_fill=palette[4],
    )
    canvas = canvas.crop(canvas.getbbox())
    width = round(canvas.width * height / canvas.height)
    return canvas.resize((width, height), Image.Resampling.LANCZOS)


def images() -> dict[str, Image.Image]:
    """Every brand image by file name."""
    drawn: dict[str, Image.Image] = {}
    for prefix in PALETTES:
        drawn[f"{prefix}icon.png"] = icon(256, prefix)
        drawn[f"{prefix}icon@2x.png"] = icon(512, prefix)
        drawn[f"{prefix}logo.png"] = logo(256, prefix)
        drawn[f"{prefix}logo@2x.png"] = logo(512, prefix)
    return drawn


def main() -> int:
    """Write (or check) the images."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed images")
    args = parser.parse_args()
    BRAND.mkdir(exist_ok=True)
    problems = []
    for name, image in images().items():
        path = BRAND / name
        if args.check:
            with Image.open(path) as committed:
                if (committed.size, committed.mode) != (image.size, image.mode):
                    problems.append(f"{name}: {committed.size} {committed.mode} != {image.size}")
        else:
            image.save(path, optimize=True)
            print(f"{path.relative_to(BRAND.parent.parent.parent)} {image.width}x{image.height}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

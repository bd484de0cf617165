"""Contact sheet of the chosen images with the model's detections, so a person sees why they were picked."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..data.coco import check_file_name
from ..data.images import read_image
from ..io import atomic_path
from .boxes import PALETTE, Box, SelectedImage

CELL = 224  # side of one thumbnail in pixels
GAP = 6  # white space between thumbnails
CAPTION = 28  # caption height under a thumbnail (two lines of the default font)
COLUMNS = 6
MAX_IMAGES = 60  # a sheet of thousands of images helps nobody; the first ones by rank are shown


def contact_sheet(path: str | Path, images_dir: str | Path, selection: list[SelectedImage],
                  boxes: dict[int, list[Box]], label_names: list[str], title: str) -> None:
    """Thumbnails in rank order, each with its boxes (label + score), rank, strategy score and file name."""
    shown = selection[:MAX_IMAGES]
    columns = max(1, min(COLUMNS, len(shown)))
    rows = max(1, -(-len(shown) // columns))
    header = 20
    sheet = Image.new("RGB", (columns * (CELL + GAP), header + rows * (CELL + CAPTION + GAP)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    if len(selection) > len(shown):
        title += f" (first {len(shown)} of {len(selection)} shown)"
    draw.text((4, 4), title, fill="black", font=font)
    colour = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(label_names)}
    for k, im in enumerate(shown):
        x0, y0 = (k % columns) * (CELL + GAP), header + (k // columns) * (CELL + CAPTION + GAP)
        where = f"{images_dir}: image {im.image}"
        pil = read_image(check_file_name(images_dir, im.image, where), where)
        scale = min(CELL / pil.width, CELL / pil.height)
        size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
        # Small images are enlarged with NEAREST so their pixels stay sharp; big ones are averaged down.
        thumb = pil.resize(size, Image.NEAREST if scale >= 1 else Image.BILINEAR)
        sheet.paste(thumb, (x0, y0))
        for b in boxes.get(im.image_id, []):
            c = colour.get(b.label, "red")
            rect = [x0 + b.x * scale, y0 + b.y * scale, x0 + (b.x + b.w) * scale, y0 + (b.y + b.h) * scale]
            draw.rectangle(rect, outline=c, width=2)
            text = b.label if b.score is None else f"{b.label} {b.score:.2f}"
            tx, ty = rect[0], max(y0, rect[1] - 11)
            draw.rectangle([tx, ty, tx + draw.textlength(text, font=font) + 2, ty + 11], fill=c)
            draw.text((tx + 1, ty), text, fill="white", font=font)
        score = "score -" if im.score is None else f"score {im.score:.4g}"
        draw.text((x0 + 2, y0 + CELL + 2), f"#{im.rank}  {score}", fill="black", font=font)
        name = im.image if len(im.image) <= 36 else "..." + im.image[-33:]
        draw.text((x0 + 2, y0 + CELL + 14), name, fill="dimgray", font=font)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")

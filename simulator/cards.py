"""Synthetic ID cards: Faker identities with valid numbers, drawn as front/back images.

Only project-made identities and images are ever used (no real cards). Each image
carries its ground truth as a JPEG comment (``idbatch-truth:v1:<json>``) so that the
simulator can answer for it the way a provider would; an image without the payload is
"not an ID card" to the simulator. ``variants`` name the defects a card was drawn with
(photocopy, glare, ...), which the simulator reports as the providers' warnings.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from faker import Faker
from PIL import Image, ImageDraw, ImageFilter
from stdnum.cn import ric

TRUTH_PREFIX = b"idbatch-truth:v1:"

# County codes; stdnum knows when each existed, and make_id_number keeps only the ones
# valid in the birth year (110101, 110105, 310104 and 120101 cover every year we draw).
REGION_CODES = (
    "110101",
    "110105",
    "310104",
    "310115",
    "440305",
    "440106",
    "330106",
    "510104",
    "420106",
    "320102",
    "370102",
    "610113",
    "500103",
    "120101",
)
NATIONS = ("汉", "汉", "汉", "汉", "汉", "回", "满", "蒙古", "壮", "维吾尔", "苗", "藏")

# Defects drawn into the image and reported as warnings by the simulator.
IMAGE_VARIANTS = (
    "photocopy",
    "bw_copy",
    "screen_reshoot",
    "photoshopped",
    "temporary_id",
    "border_incomplete",
    "border_occluded",
    "glare",
    "blur",
    "expired",
    "reversed_side",
    "electronic_id",
    "watermark",
    "invalid_validity",
)
# Variants drawn on the back (national emblem side) rather than the portrait side.
BACK_VARIANTS = frozenset({"expired", "invalid_validity"})
# Differences between the card and the authoritative registry.
REGISTRY_VARIANTS = ("name_mismatch", "unknown_id", "other_portrait")
DEFAULT_DEFECTS = (
    "claim_name",
    "claim_id",
    "name_mismatch",
    "unknown_id",
    "other_portrait",
    "not_id_card",
    "missing_file",
    "not_an_image",
    "bad_checksum",
    "empty_front",
    "internal_url",
    "photocopy",
    "screen_reshoot",
    "temporary_id",
    "photoshopped",
    "border_incomplete",
)


@dataclass
class Identity:
    name: str
    sex: str
    nation: str
    birth: dt.date
    address: str
    id_number: str
    authority: str
    valid_from: dt.date
    valid_to: dt.date | None  # None = 长期
    portrait_seed: int

    def validity_text(self) -> str:
        end = "长期" if self.valid_to is None else self.valid_to.strftime("%Y.%m.%d")
        return f"{self.valid_from.strftime('%Y.%m.%d')}-{end}"


@dataclass
class Truth:
    side: str  # front / back
    identity: Identity
    variants: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        data = asdict(self)
        return json.dumps(data, ensure_ascii=False, default=str).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Truth:
        data = json.loads(raw)
        ident = data["identity"]
        ident["birth"] = dt.date.fromisoformat(ident["birth"])
        ident["valid_from"] = dt.date.fromisoformat(ident["valid_from"])
        ident["valid_to"] = dt.date.fromisoformat(ident["valid_to"]) if ident["valid_to"] else None
        return cls(side=data["side"], identity=Identity(**ident), variants=list(data["variants"]))


def make_id_number(rng: random.Random, birth: dt.date, male: bool) -> str:
    """A number stdnum accepts: checksum, date, and a county that existed that year."""
    seq = rng.randrange(0, 100) * 10 + rng.choice((1, 3, 5, 7, 9) if male else (0, 2, 4, 6, 8))
    regions = list(REGION_CODES)
    rng.shuffle(regions)
    for region in regions:
        body = f"{region}{birth:%Y%m%d}{seq:03d}"
        number = body + ric.calc_check_digit(body + "0")
        if ric.is_valid(number):
            return number
    raise RuntimeError(f"no region code valid for birth year {birth.year}")


def make_identity(rng: random.Random, faker: Faker) -> Identity:
    male = rng.random() < 0.5
    birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 55))
    name = faker.name_male() if male else faker.name_female()
    issued = dt.date(2012, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 12))
    age_at_issue = (issued - birth).days // 365
    years = 20 if age_at_issue < 46 else None
    valid_to = issued.replace(year=issued.year + years) if years else None
    return Identity(
        name=name,
        sex="男" if male else "女",
        nation=rng.choice(NATIONS),
        birth=birth,
        address=faker.address().split(" ")[0],
        id_number=make_id_number(rng, birth, male),
        authority=f"{faker.city()}公安局{faker.city_suffix()}分局",
        valid_from=issued,
        valid_to=valid_to,
        portrait_seed=rng.randrange(1, 2**31),
    )


def render(
    truth: Truth | None,
    *,
    size: tuple[int, int] = (856, 540),
    quality: int = 85,
    rng: random.Random | None = None,
) -> bytes:
    """Draw a card (front or back) and embed the truth; ``None`` draws a non-card image."""
    rng = rng or random.Random(0)
    width, height = size
    if truth is None:
        im = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        draw = ImageDraw.Draw(im)
        for _ in range(12):
            x, y = rng.randrange(width), rng.randrange(height)
            draw.rectangle(
                [x, y, x + rng.randrange(20, 200), y + rng.randrange(20, 200)],
                fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)),
            )
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        return buf.getvalue()
    ident = truth.identity
    im = Image.new("RGB", size, (236, 240, 228))
    draw = ImageDraw.Draw(im)
    draw.rounded_rectangle([6, 6, width - 7, height - 7], radius=28, outline=(150, 160, 150), width=3)
    if truth.side == "front":
        prng = random.Random(ident.portrait_seed)
        face = (prng.randrange(150, 230), prng.randrange(120, 190), prng.randrange(100, 160))
        draw.rectangle([560, 70, 800, 370], fill=(250, 250, 250))
        draw.ellipse([600, 110, 760, 300], fill=face)
        draw.ellipse([640 + prng.randrange(10), 170, 660 + prng.randrange(10), 190], fill=(30, 30, 30))
        draw.ellipse([700 + prng.randrange(10), 170, 720 + prng.randrange(10), 190], fill=(30, 30, 30))
        draw.rectangle([560, 300, 800, 370], fill=face)
        draw.text((60, 80), "NAME  ****", fill=(20, 20, 20))
        draw.text((60, 140), f"SEX  {'M' if ident.sex == '男' else 'F'}", fill=(20, 20, 20))
        draw.text((60, 200), f"BIRTH  {ident.birth:%Y %m %d}", fill=(20, 20, 20))
        draw.text((60, 440), f"ID  {ident.id_number}", fill=(10, 10, 10))
    else:
        draw.ellipse([60, 60, 180, 180], outline=(200, 30, 30), width=6)
        draw.text((260, 90), "RESIDENT IDENTITY CARD", fill=(20, 20, 20))
        draw.text((200, 400), "AUTHORITY  ****", fill=(20, 20, 20))
        draw.text((200, 450), f"VALID  {ident.validity_text()}", fill=(20, 20, 20))
    im = _apply_variants(im, truth.variants, rng)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, comment=TRUTH_PREFIX + truth.to_json())
    return buf.getvalue()


def _apply_variants(im: Image.Image, variants: Iterable[str], rng: random.Random) -> Image.Image:
    draw = ImageDraw.Draw(im)
    width, height = im.size
    for variant in variants:
        if variant in ("photocopy", "bw_copy"):
            im = im.convert("L").convert("RGB")
            draw = ImageDraw.Draw(im)
        elif variant == "blur":
            im = im.filter(ImageFilter.GaussianBlur(6))
            draw = ImageDraw.Draw(im)
        elif variant == "glare":
            draw.ellipse([width // 3, height // 4, width // 3 + 220, height // 4 + 160], fill=(255, 255, 255))
        elif variant == "border_occluded":
            draw.rectangle([0, height - 140, 180, height], fill=(60, 45, 40))
        elif variant == "border_incomplete":
            im = im.crop((0, 0, width - 90, height))
            draw = ImageDraw.Draw(im)
        elif variant == "screen_reshoot":
            for y in range(0, im.size[1], 6):
                draw.line([(0, y), (im.size[0], y)], fill=(210, 215, 225))
        elif variant == "watermark":
            draw.text((300, 250), "SAMPLE COPY", fill=(180, 180, 180))
    return im


def read_truth(data: bytes) -> Truth | None:
    """The ground truth embedded by ``render``, or None (not one of our cards)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            comment = im.info.get("comment")
    except Exception:  # noqa: BLE001 - any undecodable input simply has no truth
        return None
    if not isinstance(comment, bytes) or not comment.startswith(TRUTH_PREFIX):
        return None
    try:
        return Truth.from_json(comment[len(TRUTH_PREFIX) :])
    except (ValueError, KeyError, TypeError):
        return None


# --- the authoritative registry the simulator checks identities against -------------


@dataclass
class RegistryEntry:
    id_number: str
    name: str
    portrait_seed: int


def write_registry(path: Path, entries: Iterable[RegistryEntry]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for entry in entries:
            fh.write(json.dumps(asdict(entry), ensure_ascii=False) + "\n")


def load_registry(path: Path) -> dict[str, RegistryEntry]:
    out: dict[str, RegistryEntry] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                entry = RegistryEntry(**json.loads(line))
                out[entry.id_number] = entry
    return out


# --- sample generation --------------------------------------------------------------

"""The fonts the demo generators write with, split into a training set and a held-out set.

Every font belongs to exactly one set: `train` fonts draw the training data
(training/demo_data.py), `heldout` fonts only the benchmark's held-out images
(training/benchmark_data.py), so the benchmark measures text in typefaces training never saw.
The split is by family (all of Roboto is held out, all of DejaVu is training), so a held-out
font is not merely a weight of a training one. Both sets have Latin and Japanese faces, and
handwriting-like ones of both scripts (different fonts on each side).

The fonts come from Debian packages (see FONT_PACKAGES; the Makefile installs them). A font
missing on the machine is skipped; a set left with no font for a script is an error, raised
when that set is first used. Which fonts were present is part of the dataset manifest, so a
dataset made with other fonts is not mistaken for this one.

Japanese faces cover Latin too; the Latin ones have no Japanese glyphs, so text with Japanese
characters always gets a Japanese face. A face without a glyph for some character of a text is
replaced by the first face of the same set and script that has them all."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ImageFont

FONT_ROOT = Path("/usr/share/fonts")
SPLITS = ("train", "heldout")
SCRIPTS = ("latin", "ja")
# "hand" is handwriting; "brush" is brush calligraphy, for poems, menus, signs and cards
# rather than notes and forms.
STYLES = ("sans", "serif", "mono", "hand", "brush", "display")

# Debian packages providing the fonts below.
FONT_PACKAGES = (
    "fonts-dejavu-core",
    "fonts-noto-cjk",
    "fonts-liberation2",
    "fonts-freefont-ttf",
    "fonts-open-sans",
    "fonts-crosextra-carlito",
    "fonts-crosextra-caladea",
    "fonts-cantarell",
    "fonts-league-spartan",
    "fonts-ebgaramond",
    "fonts-courier-prime",
    "fonts-comic-neue",
    "fonts-dancingscript",
    "fonts-tlwg-purisa-ttf",
    "fonts-roboto-unhinted",
    "fonts-sil-andika",
    "fonts-b612",
    "fonts-quicksand",
    "fonts-comfortaa",
    "fonts-hack",
    "fonts-inconsolata",
    "fonts-dkg-handwriting",
    "fonts-breip",
    "fonts-humor-sans",
    "fonts-ipaexfont-gothic",
    "fonts-ipaexfont-mincho",
    "fonts-motoya-l-maruberi",
    "fonts-motoya-l-cedar",
    "fonts-vlgothic",
    "fonts-sawarabi-gothic",
    "fonts-sawarabi-mincho",
    "fonts-seto",
    "fonts-kouzan-mouhitsu",
    "fonts-aoyagi-soseki",
    "fonts-aoyagi-kouzan-t",
)


@dataclass(frozen=True)
class FontSpec:
    path: Path
    script: str  # "latin", or "ja" (which has Latin glyphs too)
    style: str
    split: str

    @property
    def name(self) -> str:
        return self.path.name


def _specs(split: str, script: str, style: str, *paths: str) -> tuple[FontSpec, ...]:
    return tuple(FontSpec(FONT_ROOT / p, script, style, split) for p in paths)


_TT, _OT = "truetype", "opentype"
CATALOGUE: tuple[FontSpec, ...] = (
    # Training set.
    *_specs(
        "train",
        "latin",
        "sans",
        f"{_TT}/dejavu/DejaVuSans.ttf",
        f"{_TT}/dejavu/DejaVuSans-Bold.ttf",
        f"{_TT}/dejavu/DejaVuSansCondensed.ttf",
        f"{_TT}/dejavu/DejaVuSansCondensed-Bold.ttf",
        f"{_TT}/liberation2/LiberationSans-Regular.ttf",
        f"{_TT}/liberation2/LiberationSans-Bold.ttf",
        f"{_TT}/liberation2/LiberationSans-Italic.ttf",
        f"{_TT}/open-sans/OpenSans-Regular.ttf",
        f"{_TT}/open-sans/OpenSans-Semibold.ttf",
        f"{_TT}/open-sans/OpenSans-Bold.ttf",
        f"{_TT}/open-sans/OpenSans-CondBold.ttf",
        f"{_TT}/open-sans/OpenSans-Light.ttf",
        f"{_TT}/crosextra/Carlito-Regular.ttf",
        f"{_TT}/crosextra/Carlito-Bold.ttf",
        f"{_TT}/freefont/FreeSans.ttf",
        f"{_TT}/freefont/FreeSansBold.ttf",
        f"{_OT}/cantarell/Cantarell-Regular.otf",
        f"{_OT}/cantarell/Cantarell-Bold.otf",
    ),
    *_specs("train", "latin", "display", f"{_OT}/league-spartan/LeagueSpartan-Bold.otf"),
    *_specs(
        "train",
        "latin",
        "serif",
        f"{_TT}/dejavu/DejaVuSerif.ttf",
        f"{_TT}/dejavu/DejaVuSerif-Bold.ttf",
        f"{_TT}/liberation2/LiberationSerif-Regular.ttf",
        f"{_TT}/liberation2/LiberationSerif-Bold.ttf",
        f"{_TT}/freefont/FreeSerif.ttf",
        f"{_TT}/freefont/FreeSerifBold.ttf",
        f"{_OT}/ebgaramond/EBGaramond12-Regular.otf",
    ),
    *_specs(
        "train",
        "latin",
        "mono",
        f"{_TT}/dejavu/DejaVuSansMono.ttf",
        f"{_TT}/dejavu/DejaVuSansMono-Bold.ttf",
        f"{_TT}/liberation2/LiberationMono-Regular.ttf",
        f"{_TT}/freefont/FreeMono.ttf",
        f"{_TT}/freefont/FreeMonoBold.ttf",
        f"{_OT}/courier-prime/Courier Prime.otf",
    ),
    *_specs(
        "train",
        "latin",
        "hand",
        f"{_OT}/comic-neue/ComicNeue-Regular.otf",
        f"{_OT}/comic-neue/ComicNeue-Bold.otf",
        f"{_OT}/dancingscript/DancingScript-Regular.otf",
        f"{_OT}/dancingscript/DancingScript-Bold.otf",
        f"{_TT}/tlwg/Purisa.ttf",
        f"{_TT}/tlwg/Purisa-Bold.ttf",
    ),
    *_specs(
        "train",
        "ja",
        "sans",
        f"{_OT}/noto/NotoSansCJK-Regular.ttc",
        f"{_OT}/noto/NotoSansCJK-Bold.ttc",
        f"{_OT}/ipaexfont-gothic/ipaexg.ttf",
        f"{_TT}/motoya-l-maruberi/MTLmr3m.ttf",
    ),
    *_specs(
        "train",
        "ja",
        "serif",
        f"{_OT}/noto/NotoSerifCJK-Regular.ttc",
        f"{_OT}/noto/NotoSerifCJK-Bold.ttc",
        f"{_OT}/ipaexfont-mincho/ipaexm.ttf",
    ),
    *_specs("train", "ja", "hand", f"{_TT}/seto/setofont.ttf"),
    *_specs(
        "train",
        "ja",
        "brush",
        f"{_TT}/kouzan-mouhitsu/kouzan-mouhitsu.ttf",
        f"{_TT}/kouzan-mouhitsu/kouzan-mouhitsu-gyosho.ttf",
    ),
    # Held-out set.
    *_specs(
        "heldout",
        "latin",
        "sans",
        f"{_TT}/roboto/unhinted/RobotoTTF/Roboto-Regular.ttf",
        f"{_TT}/roboto/unhinted/RobotoTTF/Roboto-Medium.ttf",
        f"{_TT}/roboto/unhinted/RobotoTTF/Roboto-Bold.ttf",
        f"{_TT}/roboto/unhinted/RobotoTTF/Roboto-Light.ttf",
        f"{_TT}/roboto/unhinted/RobotoCondensed-Regular.ttf",
        f"{_TT}/roboto/unhinted/RobotoCondensed-Bold.ttf",
        f"{_TT}/andika/Andika-Regular.ttf",
        f"{_TT}/andika/Andika-Bold.ttf",
        f"{_OT}/b612/B612-Regular.otf",
        f"{_OT}/b612/B612-Bold.otf",
        f"{_TT}/quicksand/Quicksand-Regular.ttf",
        f"{_TT}/quicksand/Quicksand-Bold.ttf",
    ),
    *_specs("heldout", "latin", "display", f"{_TT}/comfortaa/Comfortaa-Bold.ttf"),
    *_specs(
        "heldout",
        "latin",
        "serif",
        f"{_TT}/crosextra/Caladea-Regular.ttf",
        f"{_TT}/crosextra/Caladea-Bold.ttf",
        f"{_TT}/crosextra/Caladea-Italic.ttf",
    ),
    *_specs(
        "heldout",
        "latin",
        "mono",
        f"{_TT}/hack/Hack-Regular.ttf",
        f"{_TT}/hack/Hack-Bold.ttf",
        f"{_TT}/inconsolata/Inconsolata.otf",
        f"{_OT}/b612/B612Mono-Regular.otf",
    ),
    *_specs(
        "heldout",
        "latin",
        "hand",
        f"{_TT}/fifthhorseman/dkg.ttf",
        f"{_TT}/fifthhorseman/dkgBd.ttf",
        f"{_TT}/breip/Breip.ttf",
        f"{_TT}/humor-sans/Humor-Sans.ttf",
    ),
    *_specs(
        "heldout",
        "ja",
        "sans",
        f"{_TT}/vlgothic/VL-Gothic-Regular.ttf",
        f"{_TT}/vlgothic/VL-PGothic-Regular.ttf",
        f"{_TT}/sawarabi-gothic/sawarabi-gothic-medium.ttf",
        f"{_TT}/motoya-l-cedar/MTLc3m.ttf",
    ),
    *_specs("heldout", "ja", "serif", f"{_TT}/sawarabi-mincho/sawarabi-mincho-medium.ttf"),
    *_specs("heldout", "ja", "hand", f"{_TT}/aoyagi-soseki/aoyagi-soseki.ttf"),
    *_specs("heldout", "ja", "brush", f"{_TT}/aoyagi-kouzan-t/AoyagiKouzanT.ttf"),
)

# A text's characters that need no glyph.
_BLANK = frozenset(" \u3000\t\n")


@functools.cache
def available(split: str) -> tuple[FontSpec, ...]:
    """The fonts of `split` present on this machine; RuntimeError if a script has none."""
    if split not in SPLITS:
        raise ValueError(f"unknown font set {split!r}, expected one of {SPLITS}")
    found = tuple(spec for spec in CATALOGUE if spec.split == split and spec.path.is_file())
    for script in SCRIPTS:
        if not any(spec.script == script for spec in found):
            wanted = sorted({str(s.path) for s in CATALOGUE if s.split == split and s.script == script})
            raise RuntimeError(
                f"no {script} font of the {split!r} set is installed (looked for {', '.join(wanted)}); "
                f"install the Debian packages {' '.join(FONT_PACKAGES)}"
            )
    return found


def names(split: str) -> tuple[str, ...]:
    return tuple(spec.name for spec in available(split))


def choices(split: str, script: str, styles: Sequence[str] | None = None) -> tuple[FontSpec, ...]:
    """The present fonts of a set for a script (Latin text may take a Japanese face too), in
    the given styles, falling back to every style when none of them is present."""
    pool = [s for s in available(split) if s.script == script or script == "latin"]
    if styles:
        styled = [s for s in pool if s.style in styles]
        pool = styled or pool
    return tuple(pool)


def pick(rng: np.random.Generator, split: str, script: str, styles: Sequence[str] | None = None) -> FontSpec:
    pool = choices(split, script, styles)
    if script == "latin":
        # A Japanese face now and then writes Latin text, as Japanese documents do.
        latin = [s for s in pool if s.script == "latin"]
        if latin and rng.random() < 0.85:
            pool = tuple(latin)
    return pool[int(rng.integers(len(pool)))]


# A code point no font here maps: what it renders as is the font's missing-glyph box.
_NOT_A_GLYPH = "\U0010fffd"


@functools.cache
def _missing_mask(path: Path) -> bytes:
    return bytes(face(path, 24).getmask(_NOT_A_GLYPH))


@functools.cache
def has_glyph(path: Path, ch: str) -> bool:
    """Whether the font draws `ch` as something other than its missing-glyph box (a
    FreeType rendering, far cheaper than reading the character map of a large font)."""
    return bytes(face(path, 24).getmask(ch)) != _missing_mask(path)


def covers(spec: FontSpec, text: str) -> bool:
    # Every font here has the printable ASCII characters (tests/test_demo_data.py checks).
    return all(has_glyph(spec.path, ch) for ch in set(text) if ch not in _BLANK and not " " <= ch <= "~")


def covering(spec: FontSpec, text: str) -> FontSpec:
    """`spec` if it has a glyph for every character of `text`, else the first font of its set
    and script that has (the first Japanese one for Japanese text)."""
    if covers(spec, text):
        return spec
    japanese = any(ord(ch) >= 0x3000 for ch in text)
    for other in available(spec.split):
        if (
            (other.script == "ja" or not japanese)
            and (other.style == spec.style or other.script == "ja")
            and covers(other, text)
        ):
            return other
    for other in available(spec.split):
        if covers(other, text):
            return other
    return spec


# Sizes come from a geometric ladder, so that the cache of loaded faces stays small.
SIZE_LADDER = tuple(sorted({round(8 * 1.12**k) for k in range(32)}))


def ladder_size(size: float) -> int:
    i = int(np.searchsorted(SIZE_LADDER, size))
    return SIZE_LADDER[min(max(i, 0), len(SIZE_LADDER) - 1)]


@functools.lru_cache(maxsize=320)
def face(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size, index=0)


@functools.cache
def metrics(path: Path) -> tuple[float, float, float]:
    """(x-height, digit height, kana height) of a font as fractions of its size; the kana
    height (of あ) is 0 for a font without Japanese glyphs."""
    ref = face(path, 100)

    def height(ch: str) -> float:
        box = ref.getbbox(ch)
        return (box[3] - box[1]) / 100 if box[3] > box[1] else 0.0

    x_height = max(0.3, height("x") or 0.5)
    digit = max(x_height, height("0"))
    kana = height("あ") if has_glyph(path, "あ") else 0.0
    return x_height, digit, kana


# How much taller than an x-height a digit, and a kana, are at the same legibility.
DIGITS_PER_X_HEIGHT = 1.4
KANA_PER_X_HEIGHT = 1.3


def x_height_ratio(spec: FontSpec, text: str) -> float:
    """The x-height, per unit of font size, of `text` in `spec`: the height of its "x" for
    text with lowercase words; for Japanese text a kana's height / KANA_PER_X_HEIGHT; for
    numbers and capitals (a phone number, a postal code) a digit's height / DIGITS_PER_X_HEIGHT,
    so that the same figure means the same legibility whatever the text."""
    x_height, digit, kana = metrics(spec.path)
    if kana and any(ord(ch) >= 0x3000 for ch in text):
        return kana / KANA_PER_X_HEIGHT
    if sum(ch.islower() for ch in text) >= 4:
        return x_height
    return digit / DIGITS_PER_X_HEIGHT

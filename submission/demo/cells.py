"""Drawing one white blood cell as a given lab would image it (the demo's renderer).

Cells are drawn from their morphology: size, nucleus shape and lobes, chromatin, granules and cytoplasm tint, so each
class is recognisable by shape, not by colour alone. A `Domain` is how one lab's images look: its stain (a colour mix;
for target labs also shifts of each stained part: nucleus, cytoplasm, granules, red cells; a global hue turn,
saturation and contrast), slide (background, red-cell density), pixel scale (and the error of its nominal value),
optics (blur, uneven illumination), sensor noise and JPEG compression, and for the lab bank's stress labs shifts beyond
colour (cell and nucleus size, granule density, overlapping and smudged cells). `studies.lab_bank` draws random labs;
`submission.demo` writes these images in the challenge's layout; a change to a drawing changes the demo's output, so it
bumps `submission.demo.lab.VERSION` (a test pins the output's digest).
"""

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Domain:
    """How one lab's images look: scale, size, stain, optics, sensor."""

    px_per_um: float  # nominal: what the lab states, and what the kit crops with
    size_hw: tuple[int, int]
    stain: tuple  # 3x3 colour mixing matrix applied to the canonical stain colours
    offset: tuple  # added after mixing
    blur_sigma: float
    noise: float  # std of pixel noise, 0..255 scale
    scale_error: float = 1.0  # true px/um = nominal x this
    nucleus_shift: tuple = (0.0, 0.0, 0.0)  # RGB added to the nucleus (and basophilic granule) colours
    cyto_shift: tuple = (0.0, 0.0, 0.0)  # RGB added to the cytoplasm, red cell and eosinophilic granule colours
    illumination: float = 0.0  # amplitude of a smooth multiplicative brightness gradient
    jpeg_quality: int = 0  # JPEG round trip before saving (0: none)
    # per stained part: (hue turn in degrees, saturation x, brightness x) of its canonical colour
    nucleus_hsv: tuple = (0.0, 1.0, 1.0)
    cyto_hsv: tuple = (0.0, 1.0, 1.0)
    granule_hsv: tuple = (0.0, 1.0, 1.0)
    rbc_hsv: tuple = (0.0, 1.0, 1.0)
    hue_turn: float = 0.0  # degrees, the whole image (after the stain mix)
    saturation: float = 1.0  # x, the whole image
    contrast: float = 1.0  # x, about the image's mean
    background: float = 1.0  # brightness x of the empty slide
    rbc_range: tuple = (3, 8)  # red cells per image: at least, fewer than
    # shifts beyond colour (the lab bank's morphology stress labs; the defaults draw what every other lab draws)
    cell_scale: float = 1.0  # x every white cell's diameter
    nucleus_scale: float = 1.0  # x every nucleus's size, within its cell
    granule_density: float = 1.0  # x every granulated class's granule count
    overlap: float = 0.0  # share of images where a second white cell overlaps the first
    smudge: float = 0.0  # share of images whose cell is smudged (smeared while the slide was made)


DOMAINS = {
    "Acevedo_20": Domain(10.0, (363, 360), ((1.0, 0.02, 0.0), (0.0, 0.92, 0.05), (0.0, 0.05, 0.80)), (0.02, 0.0, 0.05), 0.6, 2.0),
    "Matek_19": Domain(13.8, (400, 400), ((0.92, 0.0, 0.05), (0.05, 0.85, 0.0), (0.0, 0.1, 1.0)), (0.0, 0.0, 0.06), 1.2, 3.5),
    "WBC": Domain(11.52, (288, 288), ((0.82, 0.05, 0.05), (0.02, 0.80, 0.05), (0.05, 0.05, 0.92)), (-0.02, -0.03, 0.02),
                  3.0, 6.0, scale_error=1.10, nucleus_shift=(0.12, -0.02, -0.04), cyto_shift=(-0.10, 0.0, 0.05),
                  illumination=0.15, jpeg_quality=50),
    # lab B: used only by studies, for the final report
    "lab_b": Domain(11.52, (288, 288), ((0.95, 0.03, 0.0), (0.0, 0.88, 0.06), (0.04, 0.0, 0.85)), (0.03, 0.0, -0.02),
                    2.4, 7.0, scale_error=0.92, nucleus_shift=(-0.10, -0.04, 0.04), cyto_shift=(0.06, -0.03, -0.08),
                    illumination=0.2, jpeg_quality=60),
}

# Canonical stain colours (RGB 0..1) before a domain's mixing.
BACKGROUND = (0.95, 0.90, 0.92)
RBC = (0.88, 0.64, 0.66)
NUCLEUS_DARK = (0.36, 0.20, 0.52)
NUCLEUS_LIGHT = (0.52, 0.38, 0.66)
CYTO = {"pink": (0.88, 0.78, 0.84), "blue": (0.62, 0.70, 0.88), "grey": (0.74, 0.73, 0.84), "rose": (0.80, 0.66, 0.74)}
GRANULE = {"orange": (0.96, 0.55, 0.32), "black": (0.22, 0.10, 0.32), "purple": (0.58, 0.26, 0.48),
           "fine": (0.76, 0.58, 0.70)}

# (cell diameter um, cytoplasm tint, nucleus kind, granules or None, granule density)
MORPHOLOGY = {
    "basophil": (11.0, "rose", "bilobed", "black", 0.9),
    "eosinophil": (13.0, "pink", "bilobed", "orange", 1.0),
    "erythroblast": (8.5, "rose", "round_small", None, 0.0),
    "myeloblast": (16.0, "blue", "round_blast", None, 0.0),
    "promyelocyte": (18.0, "blue", "round_eccentric", "purple", 0.7),
    "myelocyte": (14.5, "pink", "oval_eccentric", "fine", 0.5),
    "metamyelocyte": (13.0, "pink", "kidney", "fine", 0.3),
    "neutrophil_banded": (12.0, "pink", "band", None, 0.0),
    "neutrophil_segmented": (12.0, "pink", "segmented", None, 0.0),
    "monocyte": (17.0, "grey", "folded", None, 0.0),
    "lymphocyte_typical": (9.0, "blue", "round_large", None, 0.0),
}


def _pt(x, y):
    # cv2 drawing with 4 bits of sub-pixel precision
    return int(round(x * 16)), int(round(y * 16))


def _circle(mask, c, r, value=255):
    cv2.circle(mask, _pt(*c), max(1, int(round(r * 16))), value, -1, cv2.LINE_AA, 4)


def _ellipse(mask, c, axes, angle, value=255, start=0, end=360, thickness=-1):
    cv2.ellipse(mask, _pt(*c), _pt(*axes), angle, start, end, value, thickness, cv2.LINE_AA, 4)


def _nucleus(mask, kind, c, r, rng):
    """Draw a nucleus of the given kind into `mask` for a cell of radius r (px) at c."""
    angle = rng.uniform(0, 360)
    rot = np.deg2rad(angle)
    u = np.array([np.cos(rot), np.sin(rot)])
    v = np.array([-u[1], u[0]])
    c = np.asarray(c, dtype=float)
    if kind == "round_large":  # lymphocyte: nucleus fills the cell
        _circle(mask, c + u * 0.05 * r, 0.84 * r)
    elif kind == "round_small":  # erythroblast: small, very round, dense
        _circle(mask, c + u * 0.1 * r, 0.56 * r)
    elif kind == "round_blast":  # myeloblast: large round nucleus, thin rim
        _ellipse(mask, c, (0.80 * r, 0.74 * r), angle)
    elif kind == "round_eccentric":  # promyelocyte
        _ellipse(mask, c + u * 0.22 * r, (0.60 * r, 0.52 * r), angle)
    elif kind == "oval_eccentric":  # myelocyte
        _ellipse(mask, c + u * 0.28 * r, (0.52 * r, 0.38 * r), angle + 90)
    elif kind == "kidney":  # metamyelocyte: bean with a notch
        _ellipse(mask, c, (0.58 * r, 0.36 * r), angle)
        _circle(mask, c + v * 0.42 * r, 0.28 * r, 0)
    elif kind == "folded":  # monocyte: large irregular, folded
        _ellipse(mask, c + u * 0.1 * r, (0.62 * r, 0.46 * r), angle)
        _circle(mask, c + v * 0.48 * r + u * 0.15 * r, 0.26 * r, 0)
        _circle(mask, c - u * 0.45 * r, 0.22 * r, 0)
    elif kind == "band":  # banded neutrophil: a thick C
        span = rng.uniform(200, 260)
        _ellipse(mask, c, (0.55 * r, 0.48 * r), angle, 255, 0, span, max(1, int(0.22 * r)))
    elif kind == "segmented":  # 3-5 lobes joined by thin strands
        k = rng.integers(3, 6)
        thetas = np.linspace(0, rng.uniform(200, 300), k) + angle
        pts = [c + 0.5 * r * np.array([np.cos(np.deg2rad(t)), np.sin(np.deg2rad(t))]) for t in thetas]
        for a, b in zip(pts[:-1], pts[1:]):
            cv2.line(mask, _pt(*a), _pt(*b), 255, max(1, int(0.07 * r)), cv2.LINE_AA, 4)
        for p in pts:
            _circle(mask, p, rng.uniform(0.20, 0.25) * r)
    elif kind == "bilobed":  # eosinophil, basophil: two lobes
        for s in (-1, 1):
            _circle(mask, c + s * u * 0.3 * r, 0.3 * r)
        cv2.line(mask, _pt(*(c - u * 0.3 * r)), _pt(*(c + u * 0.3 * r)), 255, max(1, int(0.1 * r)), cv2.LINE_AA, 4)
    else:
        raise ValueError(kind)


def _smooth_noise(rng, hw, scale_px):
    """Low-frequency noise in [-1, 1] for chromatin texture."""
    h, w = hw
    small = rng.standard_normal((max(2, int(h / scale_px)), max(2, int(w / scale_px)))).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(big / 2.0, -1, 1)


def _hsv(colour, hsv) -> np.ndarray:
    """An RGB colour (0..1) with its hue turned by hsv[0] degrees, saturation and brightness multiplied."""
    colour = np.clip(np.asarray(colour, np.float64), 0, 1)
    if tuple(hsv) == (0.0, 1.0, 1.0):
        return colour
    h, s, v = colorsys.rgb_to_hsv(*colour)
    return np.array(colorsys.hsv_to_rgb((h + hsv[0] / 360.0) % 1.0, min(1.0, s * hsv[1]), min(1.0, v * hsv[2])))


def _global_colour(img: np.ndarray, domain: Domain) -> np.ndarray:
    """The whole image's hue turn, saturation and contrast (float RGB 0..1)."""
    if domain.hue_turn or domain.saturation != 1.0:
        hsv = cv2.cvtColor(np.clip(img, 0, 1).astype(np.float32), cv2.COLOR_RGB2HSV)  # H in degrees
        hsv[..., 0] = (hsv[..., 0] + domain.hue_turn) % 360.0
        hsv[..., 1] = np.clip(hsv[..., 1] * domain.saturation, 0, 1)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if domain.contrast != 1.0:
        img = img.mean() + (img - img.mean()) * np.float32(domain.contrast)
    return img


def render_cell(cls: str, domain: Domain, rng: np.random.Generator) -> np.ndarray:
    """One image (H, W, 3) uint8 RGB of a cell of class `cls` as the domain's lab would see it."""
    h, w = domain.size_hw
    k = domain.px_per_um * domain.scale_error
    nuc_shift, cyto_shift = np.asarray(domain.nucleus_shift), np.asarray(domain.cyto_shift)
    diam, tint, nuc_kind, gran_kind, gran_density = MORPHOLOGY[cls]
    r = 0.5 * diam * k * rng.uniform(0.9, 1.1) * domain.cell_scale
    c = np.array([w / 2, h / 2]) + rng.normal(0, 0.6 * k, 2)

    img = np.empty((h, w, 3), np.float32)
    background = np.clip(np.array(BACKGROUND) * domain.background, 0, 1) if domain.background != 1.0 else BACKGROUND
    img[:] = background
    _red_cells(img, domain, rng, k, background, cyto_shift)
    if domain.overlap and rng.uniform() < domain.overlap:  # a neighbouring white cell, partly under this one
        _neighbour(img, domain, rng, k, c, r, nuc_shift, cyto_shift)

    cyto = np.zeros((h, w), np.uint8)
    _ellipse(cyto, c, (r, r * rng.uniform(0.88, 1.0)), rng.uniform(0, 360))
    _paint(img, cyto, tuple(np.clip(_hsv(CYTO[tint], domain.cyto_hsv) + cyto_shift + rng.normal(0, 0.015, 3), 0, 1)))
    if cls == "monocyte":  # vacuoles
        vac = np.zeros((h, w), np.uint8)
        for _ in range(rng.integers(3, 7)):
            _circle(vac, c + rng.uniform(-0.7, 0.7, 2) * r, rng.uniform(0.04, 0.08) * r)
        _paint(img, cv2.bitwise_and(vac, cyto), background, 0.7)
    if gran_kind is not None:
        gran = np.zeros((h, w), np.uint8)
        n = int(gran_density * domain.granule_density * (r / k) ** 2 * 2.2)
        rad = np.sqrt(rng.uniform(0, 1, n)) * 0.92 * r
        th = rng.uniform(0, 2 * np.pi, n)
        for ri, ti in zip(rad, th):
            _circle(gran, c + ri * np.array([np.cos(ti), np.sin(ti)]), rng.uniform(0.25, 0.45) * k)
        basic = gran_kind in ("black", "purple")  # basophilic granules take the nucleus's dye
        gran_colour = np.clip(_hsv(GRANULE[gran_kind], domain.granule_hsv) + (nuc_shift if basic else cyto_shift), 0, 1)
        _paint(img, cv2.bitwise_and(gran, cyto), gran_colour, 0.85)

    nuc = np.zeros((h, w), np.uint8)
    _nucleus(nuc, nuc_kind, c, r * domain.nucleus_scale, rng)
    light = nuc_kind in ("round_blast", "folded")
    colour = np.clip(_hsv(NUCLEUS_LIGHT if light else NUCLEUS_DARK, domain.nucleus_hsv) + nuc_shift, 0, 1)
    texture = _smooth_noise(rng, (h, w), (0.6 if light else 1.2) * k)[..., None]
    a = (nuc.astype(np.float32) / 255.0)[..., None]
    img = img * (1 - a) + a * np.clip(colour * (1 + 0.12 * texture), 0, 1)
    if nuc_kind == "round_blast":  # nucleoli
        nl = np.zeros((h, w), np.uint8)
        for _ in range(rng.integers(1, 3)):
            _circle(nl, c + rng.uniform(-0.35, 0.35, 2) * r, 0.1 * r)
        _paint(img, cv2.bitwise_and(nl, nuc), np.clip(_hsv(NUCLEUS_LIGHT, domain.nucleus_hsv) + np.array([0.12, 0.12, 0.08]) + nuc_shift, 0, 1), 0.8)
    if gran_kind == "black":  # basophil granules also lie over the nucleus
        _paint(img, cv2.bitwise_and(gran, nuc), gran_colour, 0.7)
    if domain.smudge and rng.uniform() < domain.smudge:
        img = _smudged(img, cyto, rng, r)

    return _lab_optics(img, domain, rng)


def _neighbour(img, domain: Domain, rng, k: float, c, r: float, nuc_shift, cyto_shift) -> None:
    """A second white cell (a neutrophil or a lymphocyte) whose centre lies 1.3-1.8 radii from the first's."""
    h, w = img.shape[:2]
    cls = ("neutrophil_segmented", "lymphocyte_typical")[int(rng.integers(2))]
    diam, tint, nuc_kind = MORPHOLOGY[cls][:3]
    rn = 0.5 * diam * k * rng.uniform(0.9, 1.1) * domain.cell_scale
    t = rng.uniform(0, 2 * np.pi)
    cn = np.asarray(c) + rng.uniform(1.3, 1.8) * r * np.array([np.cos(t), np.sin(t)])
    cyto = np.zeros((h, w), np.uint8)
    _circle(cyto, cn, rn)
    _paint(img, cyto, tuple(np.clip(_hsv(CYTO[tint], domain.cyto_hsv) + cyto_shift, 0, 1)))
    nuc = np.zeros((h, w), np.uint8)
    _nucleus(nuc, nuc_kind, cn, rn * domain.nucleus_scale, rng)
    _paint(img, nuc, np.clip(_hsv(NUCLEUS_DARK, domain.nucleus_hsv) + nuc_shift, 0, 1))


def _smudged(img, cyto, rng, r: float) -> np.ndarray:
    """A smudge cell: the cell smeared along one direction, as when it breaks while the smear is made."""
    length = max(3, int(rng.uniform(0.6, 1.2) * r)) | 1
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1.0 / length
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    kernel /= max(float(kernel.sum()), 1e-6)
    smeared = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)
    area = cv2.dilate(cyto, np.ones((length, length), np.uint8))
    a = (cv2.GaussianBlur(area, (0, 0), max(1.0, length / 6)).astype(np.float32) / 255.0)[..., None]
    return img * (1 - a) + smeared * a


def _red_cells(img, domain: Domain, rng, k: float, background, cyto_shift) -> None:
    """Red blood cells around the white cell: pale-centred discs of about 7.5 um."""
    h, w = img.shape[:2]
    rbc = np.zeros((h, w), np.uint8)
    pale = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(*domain.rbc_range)):
        p = rng.uniform(0, 1, 2) * [w, h]
        rr = 3.75 * k * rng.uniform(0.9, 1.1)
        _circle(rbc, p, rr)
        _circle(pale, p, 0.45 * rr)
    _paint(img, rbc, np.clip(_hsv(RBC, domain.rbc_hsv) + cyto_shift, 0, 1))
    _paint(img, pale, background, 0.5)


def _lab_optics(img, domain: Domain, rng) -> np.ndarray:
    """The lab's stain, optics and sensor applied to a drawn cell (float RGB in 0..1) -> uint8 RGB."""
    h, w = img.shape[:2]
    img = img @ np.asarray(domain.stain, np.float32).T + np.asarray(domain.offset, np.float32)
    img *= rng.uniform(0.96, 1.04, 3).astype(np.float32)  # slide-to-slide stain variation
    img = _global_colour(img, domain)
    if domain.illumination:  # uneven illumination: a brightness ramp in a random direction
        t = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = ((xx - w / 2) * np.cos(t) + (yy - h / 2) * np.sin(t)) / (0.5 * max(h, w))
        img *= (1.0 + domain.illumination * rng.uniform(0.5, 1.0) * ramp)[..., None]
    img = cv2.GaussianBlur(img, (0, 0), domain.blur_sigma)
    img = img * 255.0 + rng.normal(0, domain.noise, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if domain.jpeg_quality:
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, domain.jpeg_quality])
        img = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return img


def _paint(img, mask, colour, strength=1.0):
    a = (mask.astype(np.float32) / 255.0 * strength)[..., None]
    img *= 1 - a
    img += a * np.asarray(colour, np.float32)

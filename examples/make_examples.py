"""Render the bundled example images (3 content scenes, 3 painting styles) from code.

Nothing here is downloaded or derived from anyone's artwork: every pixel comes from the seeded
procedures below, so the images can be dedicated to the public domain (see SOURCES.md).
Deterministic: the same numpy/Pillow versions give the same files.

    python examples/make_examples.py            # writes examples/content/*.jpg, examples/style/*.jpg
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
W, H = 512, 384
JPEG_QUALITY = 88

# --- small toolkit: float images are HxWx3 arrays in 0..1 ----------------------------------------


def grid() -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), each HxW."""
    return np.meshgrid(np.arange(W, dtype=np.float64) + 0.5, np.arange(H, dtype=np.float64) + 0.5)


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def rgb(*c: float) -> np.ndarray:
    return np.array(c, dtype=np.float64)


def lerp(a, b, t):
    t = np.asarray(t)
    if t.ndim == 2:
        t = t[..., None]
    return a + (b - a) * t


def paint(canvas: np.ndarray, color, alpha: np.ndarray) -> None:
    """Composite ``color`` (RGB or HxWx3) over ``canvas`` in place with coverage ``alpha`` (HxW)."""
    a = np.clip(alpha, 0, 1)[..., None]
    canvas[:] = canvas * (1 - a) + np.asarray(color) * a


def fractal_noise(
    rng: np.random.Generator,
    h: int,
    w: int,
    cells: int = 4,
    octaves: int = 5,
    persistence: float = 0.5,
    stretch: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """Smooth value noise in 0..1: bicubically enlarged random grids, summed over octaves.
    ``stretch`` (sx, sy) makes features longer along x or y (streaky clouds, brush hatching)."""
    total = np.zeros((h, w))
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        n = cells * 2**o
        gw = max(2, int(n * w / max(w, h) / stretch[0]) + 2)
        gh = max(2, int(n * h / max(w, h) / stretch[1]) + 2)
        small = rng.random((gh, gw)).astype(np.float32)
        total += amp * np.asarray(Image.fromarray(small, "F").resize((w, h), Image.Resampling.BICUBIC))
        norm += amp
        amp *= persistence
    total /= norm
    return (total - total.min()) / (total.max() - total.min())


def noise_1d(rng: np.random.Generator, n: int, cells: int = 6, octaves: int = 5) -> np.ndarray:
    """Smooth 1-D fractal noise of length n in 0..1 (ridge lines, shore lines)."""
    return fractal_noise(rng, 1, n, cells=cells, octaves=octaves)[0]


def to_image(canvas: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(canvas * 255), 0, 255).astype(np.uint8), "RGB")


def from_image(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0


def blur(mask: np.ndarray, radius: float) -> np.ndarray:
    """Separable Gaussian blur (PIL's blur does not take float images)."""
    r = int(3 * radius) + 1
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / radius) ** 2)
    k /= k.sum()
    padded = np.pad(mask, r, mode="edge")
    rows = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 1, padded)
    return np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 0, rows)


def grain(canvas: np.ndarray, rng: np.random.Generator, amount: float = 0.02) -> np.ndarray:
    """A little film grain so flat areas do not band in JPEG."""
    return np.clip(canvas + rng.normal(0, amount, canvas.shape[:2])[..., None], 0, 1)


# --- content: lakeside at sunset ---------------------------------------------------------------


def lakeside() -> Image.Image:
    rng = np.random.default_rng(11)
    x, y = grid()
    horizon = 0.60 * H
    img = np.zeros((H, W, 3))

    # Sky: deep blue overhead to warm orange at the horizon, a glowing low sun, streaky clouds.
    t = np.clip(y / horizon, 0, 1) ** 1.6
    img[:] = lerp(rgb(0.16, 0.27, 0.55), rgb(0.98, 0.70, 0.42), t)
    sun_x, sun_y, sun_r = 0.70 * W, 0.44 * H, 17.0
    d_sun = np.hypot(x - sun_x, y - sun_y)
    img += (np.exp(-d_sun / 70.0) * 0.45)[..., None] * rgb(1.0, 0.75, 0.45)
    paint(img, rgb(1.0, 0.96, 0.82), smoothstep(sun_r + 1, sun_r - 1, d_sun))
    clouds = fractal_noise(rng, H, W, cells=3, octaves=5, stretch=(5.0, 1.0))
    cloud_a = smoothstep(0.52, 0.78, clouds) * smoothstep(horizon * 0.95, horizon * 0.25, y) * 0.85
    cloud_col = lerp(rgb(0.55, 0.45, 0.62), rgb(1.0, 0.72, 0.60), np.clip(y / horizon + 0.2 * (clouds - 0.5), 0, 1))
    paint(img, cloud_col, cloud_a)

    # Far mountains in haze, then nearer darker hills.
    ridge_far = horizon - 38 - 70 * noise_1d(rng, W, cells=5)
    far = smoothstep(-0.8, 0.8, y - ridge_far)
    far_col = lerp(rgb(0.48, 0.42, 0.58), rgb(0.68, 0.55, 0.60), np.clip((y - ridge_far) / 80, 0, 1))
    paint(img, far_col, far * (y < horizon + 1))
    ridge_near = horizon - 8 - 34 * noise_1d(rng, W, cells=3) * smoothstep(0.05 * W, 0.55 * W, W - x)
    hill_tex = fractal_noise(rng, H, W, cells=12, octaves=4)
    near_col = lerp(rgb(0.16, 0.30, 0.17), rgb(0.30, 0.42, 0.20), hill_tex * 0.8)
    near_col *= (1 - 0.35 * np.clip((y - ridge_near) / 40, 0, 1))[..., None]
    paint(img, near_col, smoothstep(-0.8, 0.8, y - ridge_near) * (y < horizon + 1))

    # Pines on the left shore: stacked triangles, slightly jagged.
    for tx, th in [(38, 62), (58, 84), (80, 58), (104, 70), (124, 46), (145, 52), (20, 50)]:
        base = horizon + 1
        top = base - th
        rel = np.clip((y - top) / th, 0, 1)
        saw = 0.55 + 0.45 * ((rel * 4) % 1.0)  # tiers of branches
        half = rel * saw * th * 0.28 + 1.0
        tree = smoothstep(0.8, -0.8, np.abs(x - tx) - half) * (y > top) * (y <= base)
        shade = lerp(rgb(0.06, 0.14, 0.08), rgb(0.15, 0.26, 0.12), np.clip((x - tx) / (th * 0.3) * -1, 0, 1))
        paint(img, shade, tree)

    # Lake: mirror everything above the horizon with ripples that grow towards the viewer.
    above = img.copy()
    depth = np.clip((y - horizon) / (H - horizon), 0, 1)
    ripple = np.sin(y * 0.9 + 6 * fractal_noise(rng, H, W, cells=6, octaves=3, stretch=(6.0, 1.0))) * (1 + 5 * depth)
    src_y = np.clip(2 * horizon - y + 0.3 * ripple, 0, horizon - 1).astype(int)
    src_x = np.clip(x + 1.5 * ripple, 0, W - 1).astype(int)
    reflection = above[src_y, src_x] * 0.72 + rgb(0.03, 0.07, 0.12)
    reflection = lerp(reflection, rgb(0.10, 0.18, 0.30), depth * 0.55)
    water = y >= horizon
    img[water] = reflection[water]
    # Sun glitter: broken horizontal dashes under the sun.
    dashes = smoothstep(0.62, 0.9, fractal_noise(rng, H, W, cells=10, octaves=3, stretch=(8.0, 0.5)))
    glitter = dashes * np.exp(-(((x - sun_x) / (14 + 60 * depth)) ** 2)) * water
    img += (glitter * 0.8)[..., None] * rgb(1.0, 0.85, 0.6)
    paint(img, rgb(0.95, 0.80, 0.62), smoothstep(1.2, 0, np.abs(y - horizon)) * 0.5)

    # Dark grassy bank with reeds in the foreground, bottom left.
    bank_line = H - 22 - 40 * smoothstep(0.55 * W, 0.0, x) - 10 * noise_1d(rng, W, cells=8)
    bank = smoothstep(-0.8, 0.8, y - bank_line)
    bank_col = lerp(rgb(0.10, 0.16, 0.08), rgb(0.22, 0.26, 0.10), fractal_noise(rng, H, W, cells=20, octaves=3))
    paint(img, bank_col, bank)
    canvas = to_image(np.clip(img, 0, 1))
    draw = ImageDraw.Draw(canvas)
    for _ in range(70):
        rx = rng.uniform(0, 0.5 * W)
        base_y = H - 22 - 40 * float(smoothstep(0.55 * W, 0.0, np.array(rx))) + 6
        length = rng.uniform(18, 55)
        lean = rng.uniform(-8, 8)
        shade = tuple(int(v) for v in rng.uniform([20, 34, 14], [60, 70, 28]))
        draw.line([(rx, base_y), (rx + lean, base_y - length)], fill=shade, width=int(rng.integers(1, 3)))
    return to_image(grain(from_image(canvas), rng, 0.012))


# --- content: village street -------------------------------------------------------------------


def village() -> Image.Image:
    rng = np.random.default_rng(22)
    x, y = grid()
    ground_y = 0.70 * H
    img = np.zeros((H, W, 3))
    img[:] = lerp(rgb(0.35, 0.58, 0.85), rgb(0.80, 0.88, 0.95), np.clip(y / ground_y, 0, 1))
    clouds = fractal_noise(rng, H, W, cells=3, octaves=5, stretch=(2.5, 1.0))
    paint(img, rgb(1.0, 1.0, 1.0), smoothstep(0.5, 0.75, clouds) * smoothstep(ground_y, 0.2 * H, y) * 0.9)
    # Distant green hills behind the houses.
    ridge = ground_y - 40 - 45 * noise_1d(rng, W, cells=3)
    paint(
        img,
        lerp(rgb(0.40, 0.58, 0.38), rgb(0.30, 0.48, 0.30), fractal_noise(rng, H, W, cells=10, octaves=3)),
        smoothstep(-0.8, 0.8, y - ridge),
    )
    grass = lerp(rgb(0.34, 0.55, 0.22), rgb(0.48, 0.64, 0.28), fractal_noise(rng, H, W, cells=16, octaves=4))
    paint(img, grass, smoothstep(-0.8, 0.8, y - ground_y))

    # Shapes are drawn at 3x and shrunk, which antialiases every edge.
    s = 3
    big = to_image(img).resize((W * s, H * s), Image.Resampling.BICUBIC)
    shadows = Image.new("L", big.size, 0)
    sd = ImageDraw.Draw(shadows)
    d = ImageDraw.Draw(big)

    def P(*pts):
        return [(px * s, py * s) for px, py in pts]

    # Road: a cobbled lane widening towards the viewer.
    d.polygon(P((228, ground_y + 4), (262, ground_y + 4), (400, H), (120, H)), fill=(168, 150, 128))
    for row in range(14):
        yy = ground_y + 6 + row * (H - ground_y) / 14
        d.line(P((244 - (yy - ground_y) * 1.1, yy), (246 + (yy - ground_y) * 1.25, yy)), fill=(140, 122, 104), width=s)

    walls = [(236, 214, 176), (204, 110, 78), (222, 184, 110), (170, 190, 205), (232, 222, 200), (196, 150, 110)]
    roofs = [(150, 58, 40), (90, 70, 72), (170, 80, 48), (120, 50, 40), (80, 84, 96), (160, 66, 44)]
    base = ground_y + 8
    houses = [(18, 70, 78), (96, 62, 100), (300, 58, 86), (366, 76, 70), (450, 56, 92)]
    for i, (hx, hw, hh) in enumerate(houses):
        wall, roof = walls[i % len(walls)], roofs[(i * 2 + 1) % len(roofs)]
        depth = 18
        dark = tuple(int(c * 0.68) for c in wall)
        top = base - hh
        peak = top - hw * 0.45
        # Shadow cast to the right on the grass.
        sd.polygon(
            P((hx + hw, base), (hx + hw + depth, base - 8), (hx + hw + depth + 40, base - 2), (hx + hw + 36, base + 6)),
            fill=110,
        )
        d.polygon(
            P((hx + hw, top), (hx + hw + depth, top - 8), (hx + hw + depth, base - 8), (hx + hw, base)), fill=dark
        )
        d.rectangle(P((hx, top), (hx + hw, base)), fill=wall)
        d.polygon(P((hx - 4, top + 2), (hx + hw / 2, peak), (hx + hw + 4, top + 2)), fill=roof)
        d.polygon(
            P(
                (hx + hw / 2, peak),
                (hx + hw / 2 + depth, peak - 8),
                (hx + hw + depth + 4, top - 6),
                (hx + hw + 4, top + 2),
            ),
            fill=tuple(int(c * 0.75) for c in roof),
        )
        chim_x = hx + hw * 0.70
        roof_at = peak + (chim_x - hx - hw / 2) / (hw / 2 + 4) * (top + 2 - peak)
        d.rectangle(P((chim_x, roof_at - 16), (chim_x + hw * 0.1, roof_at + 4)), fill=(110, 90, 80))  # chimney
        for wx in (hx + hw * 0.18, hx + hw * 0.62):
            for wy in (top + hh * 0.18, top + hh * 0.52):
                if wy + 16 > base - 22 and abs(wx - (hx + hw * 0.4)) < 14:
                    continue
                d.rectangle(P((wx - 1.5, wy - 1.5), (wx + 13.5, wy + 17.5)), fill=(245, 240, 230))
                d.rectangle(P((wx, wy), (wx + 12, wy + 16)), fill=(52, 70, 96))
                d.polygon(P((wx, wy), (wx + 7, wy), (wx, wy + 9)), fill=(120, 150, 180))  # sky reflection
                d.line(P((wx + 6, wy), (wx + 6, wy + 16)), fill=(245, 240, 230), width=s)
        door_x = hx + hw * 0.38
        d.rectangle(P((door_x, base - 26), (door_x + 14, base)), fill=(96, 58, 36))
        d.ellipse(P((door_x + 10, base - 13), (door_x + 12, base - 11)), fill=(220, 190, 90))

    # Church tower with a spire and a clock.
    cx0, cx1, ctop = 190, 222, base - 150
    d.polygon(P((cx1, ctop), (cx1 + 12, ctop - 6), (cx1 + 12, base - 6), (cx1, base)), fill=(150, 142, 128))
    d.rectangle(P((cx0, ctop), (cx1, base)), fill=(214, 206, 190))
    d.polygon(P((cx0 - 3, ctop), ((cx0 + cx1) / 2, ctop - 62), (cx1 + 3, ctop)), fill=(70, 86, 92))
    d.polygon(P(((cx0 + cx1) / 2, ctop - 62), (cx1 + 12, ctop - 6), (cx1 + 3, ctop)), fill=(48, 60, 66))
    d.ellipse(P((cx0 + 6, ctop + 14), (cx1 - 6, ctop + 34)), fill=(250, 246, 236), outline=(60, 60, 60), width=s)
    d.line(P(((cx0 + cx1) / 2, ctop + 24), ((cx0 + cx1) / 2, ctop + 17)), fill=(40, 40, 40), width=s)
    d.line(P(((cx0 + cx1) / 2, ctop + 24), ((cx0 + cx1) / 2 + 5, ctop + 26)), fill=(40, 40, 40), width=s)
    d.rectangle(P((cx0 + 11, ctop + 50), (cx1 - 11, ctop + 76)), fill=(60, 60, 70))
    d.pieslice(P((cx0 + 11, ctop + 44), (cx1 - 11, ctop + 56)), 180, 360, fill=(60, 60, 70))
    d.rectangle(P((cx0 + 9, base - 30), (cx1 - 9, base)), fill=(90, 56, 34))

    # A round tree in front, lit from the upper left.
    tx, ty = 282, base - 12
    d.rectangle(P((tx - 4, ty - 40), (tx + 4, ty + 10)), fill=(90, 62, 40))
    sd.ellipse(P((tx - 10, ty + 2), (tx + 60, ty + 16)), fill=120)
    for _ in range(60):
        ang = rng.uniform(0, 2 * np.pi)
        rad = rng.uniform(0, 26)
        bx, by = tx + np.cos(ang) * rad * 1.1, ty - 58 + np.sin(ang) * rad
        r = rng.uniform(8, 14)
        light = np.clip(0.5 - (bx - tx) / 60 - (by - (ty - 58)) / 60 + rng.normal(0, 0.1), 0, 1)
        col = tuple(int(v) for v in lerp(rgb(40, 82, 36), rgb(120, 170, 70), light))
        d.ellipse(P((bx - r, by - r), (bx + r, by + r)), fill=col)

    small = big.resize((W, H), Image.Resampling.LANCZOS)
    shade = np.asarray(shadows.resize((W, H), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0
    out = from_image(small) * (1 - 0.45 * blur(shade, 2.0))[..., None]
    return to_image(grain(out, rng, 0.015))


# --- content: still life -----------------------------------------------------------------------


LIGHT = np.array([-0.55, -0.6, 0.58]) / np.linalg.norm([-0.55, -0.6, 0.58])


def shade_surface(nx, ny, nz, base, shine=0.5, power=30.0, ambient=0.22) -> np.ndarray:
    """Lambert + Phong shading of a surface with normals (nx, ny, nz), viewer along +z."""
    diffuse = np.clip(nx * LIGHT[0] + ny * LIGHT[1] + nz * LIGHT[2], 0, 1)
    # Reflection of the light about the normal, compared with the view direction (0, 0, 1).
    dot = nx * LIGHT[0] + ny * LIGHT[1] + nz * LIGHT[2]
    spec = np.clip(2 * dot * nz - LIGHT[2], 0, 1) ** power
    col = np.asarray(base) * (ambient + (1 - ambient) * diffuse)[..., None]
    return col + (shine * spec)[..., None]


def still_life() -> Image.Image:
    rng = np.random.default_rng(33)
    x, y = grid()
    table_y = 0.66 * H
    img = np.zeros((H, W, 3))
    # Warm dark wall with a soft pool of light, then a wooden table with grain.
    glow = np.exp(-(((x - 0.35 * W) / (0.6 * W)) ** 2 + ((y - 0.3 * H) / (0.6 * H)) ** 2))
    wall_tex = fractal_noise(rng, H, W, cells=5, octaves=5)
    img[:] = lerp(rgb(0.12, 0.10, 0.09), rgb(0.46, 0.38, 0.28), glow * (0.85 + 0.3 * wall_tex))
    grain_tex = np.sin(y * 0.9 + 14 * fractal_noise(rng, H, W, cells=4, octaves=4, stretch=(8.0, 1.0)))
    wood = lerp(rgb(0.36, 0.20, 0.10), rgb(0.52, 0.32, 0.16), 0.5 + 0.25 * grain_tex)
    wood *= (0.8 + 0.3 * glow)[..., None]
    paint(img, wood, smoothstep(-0.8, 0.8, y - table_y))
    paint(img, rgb(0.20, 0.11, 0.06), smoothstep(-0.8, 0.8, y - (H - 30)))  # table's front edge
    paint(img, rgb(0.62, 0.42, 0.24), smoothstep(1.5, 0, np.abs(y - table_y)) * 0.6)  # lit edge

    # Soft shadows on the table first, cast to the right (light comes from the upper left).
    shadow = np.zeros((H, W))
    for cx, cy, rx, ry in [(228, table_y + 6, 62, 12), (165, 282, 36, 8), (328, 288, 40, 9), (395, 294, 30, 7)]:
        shadow = np.maximum(shadow, np.clip(1 - ((x - cx) / rx) ** 2 - ((y - cy) / ry) ** 2, 0, 1))
    img *= (1 - 0.55 * blur(shadow, 5.0))[..., None]

    # Vase: a surface of revolution with a bulb body, narrow neck and flared lip.
    vx, v_top, v_bot = 205.0, 0.16 * H, table_y + 6
    u = np.clip((y - v_top) / (v_bot - v_top), 0, 1)
    radius = 16 + 8 * smoothstep(0.12, 0.0, u) + 46 * np.sin(np.pi * np.clip((u - 0.22) / 0.78, 0, 1)) ** 0.8
    du = np.gradient(radius, axis=0)
    inside = (y >= v_top) & (y <= v_bot)
    nxv = np.clip((x - vx) / radius, -1, 1)
    nzv = np.sqrt(np.clip(1 - nxv**2, 0, 1))
    nyv = -du * nzv * 0.8
    norm = np.sqrt(nxv**2 + nyv**2 + nzv**2)
    pattern = 0.5 + 0.5 * np.sin(u * 40 + 3 * np.sin(nxv * 3))  # glaze bands
    vase_col = lerp(rgb(0.10, 0.28, 0.52), rgb(0.16, 0.40, 0.62), pattern * smoothstep(0.45, 0.5, u))
    vase = shade_surface(nxv / norm, nyv / norm, nzv / norm, vase_col, shine=0.75, power=40)
    paint(img, vase, smoothstep(0.8, -0.8, np.abs(x - vx) - radius) * inside)

    def sphere(cx, cy, r, base, sx=1.0, shine=0.35, power=25.0):
        dx, dy = (x - cx) / (r * sx), (y - cy) / r
        dd = dx * dx + dy * dy
        nz = np.sqrt(np.clip(1 - dd, 0, 1))
        col = shade_surface(dx, dy, nz, base, shine=shine, power=power)
        # Warm light bounced up from the table onto the underside.
        col += (np.clip(dy, 0, 1) ** 3 * 0.12)[..., None] * rgb(0.8, 0.5, 0.3)
        paint(img, col, smoothstep(1.0 + 1.2 / r, 1.0 - 1.2 / r, np.sqrt(dd)))

    # Grapes behind, then fruit in front (painter's order).
    for gx, gy in [(262, 236), (280, 232), (271, 250), (290, 248), (254, 252), (281, 264), (264, 266), (298, 262)]:
        sphere(gx, gy, 11, rgb(0.32, 0.12, 0.36), shine=0.5, power=40)
    apple = lerp(
        rgb(0.70, 0.08, 0.06),
        rgb(0.85, 0.62, 0.15),
        smoothstep(0.3, 0.9, fractal_noise(rng, H, W, cells=8, octaves=3)) * 0.5,
    )
    sphere(140, 248, 36, apple, shine=0.4)
    d_stem = smoothstep(1.2, 0, np.abs(x - 142 - (212 - y) * 0.25)) * (y > 204) * (y < 218)
    paint(img, rgb(0.25, 0.16, 0.08), d_stem)
    orange_tex = 0.92 + 0.08 * fractal_noise(rng, H, W, cells=60, octaves=2)
    sphere(305, 258, 32, rgb(0.95, 0.52, 0.08) * orange_tex[..., None], shine=0.3, power=18)
    sphere(374, 272, 22, rgb(0.95, 0.82, 0.20), sx=1.45, shine=0.45, power=30)
    return to_image(grain(np.clip(img, 0, 1), rng, 0.012))


# --- style: swirling night sky -----------------------------------------------------------------


def swirls() -> Image.Image:
    """Swirling brush strokes in blues and yellows: line integral convolution of coarse noise along
    a field of vortices, coloured by a palette, so the texture looks like strokes following the sky."""
    rng = np.random.default_rng(44)
    x, y = grid()
    stars = [(70, 60, 24), (190, 40, 18), (300, 95, 20), (430, 50, 34), (120, 160, 14), (250, 180, 12)]
    vortices = [(200, 120, 70, 1.0), (330, 150, 60, -0.8), (90, 110, 50, 0.8)]

    def field(px, py):
        vx = np.ones_like(px) * 0.9
        vy = 0.5 * np.sin(px / 60.0 + py / 80.0)
        for cx, cy, r, strength in vortices + [(sx, sy, sr * 1.8, 1.2) for sx, sy, sr in stars]:
            dx, dy = px - cx, py - cy
            fall = strength * np.exp(-(dx * dx + dy * dy) / (2 * r * r)) * 3.0
            d = np.sqrt(dx * dx + dy * dy) + 1e-6
            vx += -dy / d * fall
            vy += dx / d * fall
        n = np.sqrt(vx * vx + vy * vy) + 1e-9
        return vx / n, vy / n

    def lic(noise, steps=18):
        acc = noise.copy()
        for direction in (1.0, -1.0):
            px, py = x.copy(), y.copy()
            for _ in range(steps):
                vx, vy = field(px, py)
                px = np.clip(px + direction * vx * 1.2, 0, W - 1)
                py = np.clip(py + direction * vy * 1.2, 0, H - 1)
                acc += noise[py.astype(int), px.astype(int)]
        return acc / (2 * steps + 1)

    # Blocky noise makes broad strokes; LIC smears each block along the flow.
    coarse = rng.random((H // 3 + 1, W // 3 + 1))
    stroke_noise = np.kron(coarse, np.ones((3, 3)))[:H, :W]
    strokes = lic(stroke_noise)
    strokes = (strokes - strokes.mean()) / strokes.std()
    hue_noise = np.kron(rng.random((H // 6 + 1, W // 6 + 1)), np.ones((6, 6)))[:H, :W]
    hue = lic(hue_noise)
    hue = (hue - hue.min()) / (hue.max() - hue.min())

    sky_y = y / H
    img = lerp(rgb(0.06, 0.14, 0.42), rgb(0.20, 0.40, 0.70), np.clip(hue * 1.3 - 0.15 + 0.3 * sky_y, 0, 1))
    # Pale swirling bands along the big vortices.
    band = smoothstep(0.58, 0.8, hue)
    img = lerp(img, rgb(0.55, 0.72, 0.85), band * 0.7)
    # Stars and moon: yellow cores with ringed halos.
    for sx, sy, sr in stars:
        d = np.hypot(x - sx, y - sy)
        halo = np.exp(-((d / (sr * 1.9)) ** 2))
        rings = 0.5 + 0.5 * np.cos(d / sr * 5.0)
        img = lerp(img, rgb(0.95, 0.85, 0.35), np.clip(halo * (0.55 + 0.45 * rings), 0, 1))
        img = lerp(img, rgb(1.0, 0.97, 0.75), smoothstep(sr * 0.55, sr * 0.35, d))
    moon_d = np.hypot(x - 430, y - 50)
    bite = np.hypot(x - 442, y - 42)
    img = lerp(img, rgb(1.0, 0.78, 0.20), smoothstep(19, 16, moon_d) * smoothstep(11, 14, bite))
    # Dark rolling hills and a flame-shaped tree in the foreground.
    hills = H * 0.78 - 30 * noise_1d(rng, W, cells=3) - 20 * np.sin(x[0] / 70)
    hill_col = lerp(rgb(0.05, 0.10, 0.22), rgb(0.15, 0.28, 0.35), hue)
    img = lerp(img, hill_col, smoothstep(-1, 1, y - hills))
    tip = 0.12 * H
    along = np.clip((y - tip) / (H - tip), 0, 1)  # 0 at the pointed tip, 1 at the ground
    flame_w = 32 * along**0.55 + 5 * np.sin(y / 8) * along
    flame = smoothstep(1, -1, np.abs(x - 62 - 9 * np.sin(y / 37)) - flame_w) * (y > tip)
    img = lerp(img, lerp(rgb(0.04, 0.08, 0.05), rgb(0.15, 0.22, 0.10), hue), flame)
    # Every stroke catches light differently: modulate brightness by the stroke texture.
    img = img * (1.0 + 0.22 * strokes)[..., None]
    return to_image(np.clip(img, 0, 1))


# --- style: stained glass ----------------------------------------------------------------------


def stained_glass() -> Image.Image:
    """A rose window: Voronoi cells of jewel-coloured glass held in dark lead came."""
    rng = np.random.default_rng(55)
    x, y = grid()
    cx, cy = W / 2, H / 2
    gx, gy = np.meshgrid(np.linspace(0, W, 17), np.linspace(0, H, 13))
    sites = np.stack([gx.ravel(), gy.ravel()], 1) + rng.normal(0, 9, (gx.size, 2))
    ang = rng.uniform(0, 2 * np.pi, 40)
    rad = np.sqrt(rng.uniform(0, 1, 40)) * 110
    sites = np.concatenate([sites, np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)])

    d1 = np.full((H, W), np.inf)
    d2 = np.full((H, W), np.inf)
    nearest = np.zeros((H, W), int)
    for i, (sx, sy) in enumerate(sites):
        d = np.hypot(x - sx, y - sy)
        closer = d < d1
        d2 = np.where(closer, d1, np.minimum(d2, d))
        nearest = np.where(closer, i, nearest)
        d1 = np.where(closer, d, d1)

    # Colour each cell by where it sits in the rose: amber heart, ruby ring, cobalt field.
    palette = {
        "amber": [rgb(0.95, 0.65, 0.12), rgb(0.98, 0.80, 0.30), rgb(0.85, 0.45, 0.10)],
        "ruby": [rgb(0.72, 0.08, 0.12), rgb(0.85, 0.20, 0.25), rgb(0.55, 0.05, 0.20)],
        "cobalt": [rgb(0.08, 0.20, 0.62), rgb(0.15, 0.35, 0.75), rgb(0.30, 0.15, 0.55), rgb(0.10, 0.45, 0.55)],
        "emerald": [rgb(0.08, 0.50, 0.30), rgb(0.30, 0.60, 0.20)],
    }
    colours = []
    for sx, sy in sites:
        r = np.hypot(sx - cx, sy - cy)
        if r < 55:
            group = "amber"
        elif r < 115:
            group = "ruby" if rng.random() < 0.85 else "amber"
        elif r < 175:
            group = "cobalt" if rng.random() < 0.8 else "emerald"
        else:
            group = "cobalt" if rng.random() < 0.55 else ("emerald" if rng.random() < 0.6 else "ruby")
        options = palette[group]
        colours.append(options[rng.integers(len(options))] * rng.uniform(0.85, 1.1))
    img = np.asarray(colours)[nearest]

    # Glass is brighter in the middle of each pane and uneven (seeds, thickness).
    gap = d2 - d1
    img *= (0.62 + 0.45 * smoothstep(0, 22, gap) + 0.25 * (fractal_noise(rng, H, W, cells=24, octaves=3) - 0.5))[
        ..., None
    ]
    light = np.exp(-((np.hypot(x - cx, y - cy) / 300) ** 2))
    img *= (0.75 + 0.4 * light)[..., None]
    # Lead came along cell borders and three concentric rings.
    lead = smoothstep(3.2, 1.8, gap)
    r_c = np.hypot(x - cx, y - cy)
    for ring in (55, 115, 175):
        lead = np.maximum(lead, smoothstep(2.6, 1.4, np.abs(r_c - ring)))
    img = lerp(img, rgb(0.07, 0.06, 0.06), lead)
    return to_image(grain(np.clip(img, 0, 1), rng, 0.012))


# --- style: cubist facets ----------------------------------------------------------------------


def cubist() -> Image.Image:
    """Analytic-cubism facets: the canvas split by lines and arcs into planes, each in a muted
    ochre/umber/slate tone with its own light gradient and hatched brushwork, edges drawn dark."""
    rng = np.random.default_rng(66)
    x, y = grid()
    code = np.zeros((H, W), np.int64)
    edge = np.full((H, W), np.inf)
    for k in range(13):
        px, py = rng.uniform(0.1 * W, 0.9 * W), rng.uniform(0.1 * H, 0.9 * H)
        theta = rng.uniform(0, np.pi)
        nx, ny = np.cos(theta), np.sin(theta)
        dist = (x - px) * nx + (y - py) * ny
        code |= (dist > 0).astype(np.int64) << k
        edge = np.minimum(edge, np.abs(dist))
    for k, (ax, ay, ar) in enumerate([(200, 170, 90), (340, 230, 60), (150, 300, 45)]):
        dist = np.hypot(x - ax, y - ay) - ar
        code |= (dist > 0).astype(np.int64) << (13 + k)
        edge = np.minimum(edge, np.abs(dist))
    _, facet = np.unique(code, return_inverse=True)
    facet = facet.reshape(H, W)
    n = facet.max() + 1

    palette = np.array(
        [
            [0.78, 0.62, 0.36],
            [0.62, 0.45, 0.25],
            [0.42, 0.30, 0.18],
            [0.36, 0.40, 0.44],
            [0.55, 0.55, 0.48],
            [0.86, 0.80, 0.64],
            [0.24, 0.22, 0.20],
            [0.50, 0.52, 0.34],
            [0.30, 0.42, 0.44],
        ]
    )
    base = palette[rng.integers(len(palette), size=n)] * rng.uniform(0.85, 1.1, (n, 1))
    angle = rng.uniform(0, 2 * np.pi, n)
    # Each facet is lit from its own direction, as if seen from several viewpoints at once.
    counts = np.bincount(facet.ravel(), minlength=n)
    mx = np.bincount(facet.ravel(), weights=x.ravel(), minlength=n) / np.maximum(counts, 1)
    my = np.bincount(facet.ravel(), weights=y.ravel(), minlength=n) / np.maximum(counts, 1)
    along = (x - mx[facet]) * np.cos(angle)[facet] + (y - my[facet]) * np.sin(angle)[facet]
    shade = 0.95 + 0.45 * np.tanh(along / 60.0)
    img = base[facet] * shade[..., None]

    hatch_h = fractal_noise(rng, H, W, cells=40, octaves=2, stretch=(0.15, 4.0))
    hatch_v = fractal_noise(rng, H, W, cells=40, octaves=2, stretch=(4.0, 0.15))
    hatch = np.where((np.arange(n) % 2 == 0)[facet], hatch_h, hatch_v)
    img *= (0.86 + 0.28 * hatch)[..., None]
    # Dark contour along most edges, fading in and out like a drawn line.
    line_strength = smoothstep(0.3, 0.6, fractal_noise(rng, H, W, cells=4, octaves=3))
    img = lerp(img, rgb(0.12, 0.10, 0.08), smoothstep(2.2, 0.8, edge) * (0.5 + 0.5 * line_strength))
    weave = 0.03 * np.sin(x * 2.1) * np.sin(y * 2.1)
    return to_image(grain(np.clip(img + weave[..., None], 0, 1), rng, 0.015))


EXAMPLES = {
    "content/lakeside.jpg": lakeside,
    "content/village.jpg": village,
    "content/still_life.jpg": still_life,
    "style/swirls.jpg": swirls,
    "style/stained_glass.jpg": stained_glass,
    "style/cubist.jpg": cubist,
}


def main() -> None:
    for rel, render in EXAMPLES.items():
        path = HERE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img = render()
        tmp = path.with_suffix(".tmp.jpg")
        img.save(tmp, "JPEG", quality=JPEG_QUALITY, optimize=True)
        tmp.replace(path)  # atomic: never leave a half-written example behind
        print(f"{rel}: {img.width}x{img.height}, {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()

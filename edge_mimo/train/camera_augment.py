"""The ``camera`` augmentation preset: what a camera does to an object before the model sees it.

Applied per image, before binding (each slot sees its own scene), batched on the training device. Every
knob of :class:`CameraAugment` is one physical effect, drawn independently per image:

- ``clean_prob``: share of images left as the dataset has them (only shifted by up to 2 px and flipped),
  so the clean distribution stays in training.
- ``scale``, ``max_rotation``, ``flip``: the object fills 60-100 % of the crop, is placed anywhere it fits
  (plus up to 2 px beyond), tilted by up to ``max_rotation`` degrees and mirrored half of the time.
- ``dark_prob``, ``texture``, ``gradient``: the scene behind the object. The background level is uniform
  in 0..1 (or, with ``dark_prob``, in 0..0.08: the dataset's black), plus smooth random texture of
  amplitude up to ``texture`` and a linear illumination gradient up to ``gradient``.
- ``contrast``, ``brightness``, ``gamma``: sensor gain and tone curve of the whole frame.
- ``low_light_prob``, ``low_light_gain``: an underexposed frame (everything darker, noise doubled).
- ``blur_prob``, ``blur_sigma``: defocus / motion blur, a Gaussian of that sigma in model pixels.
- ``noise``: Gaussian sensor noise, standard deviation up to ``noise`` (0..1 units).
- ``jpeg_prob``, ``jpeg_quality``: JPEG compression (8x8 DCT blocks, the standard luminance table).

Where the object ends: its opacity is the image's own intensity after a 3x3 closing, opaque from 8/255 up,
so datasets of objects on black (Fashion-MNIST, MNIST) get a real background behind the object. On photos
(no black background) the whole image is the object and only the border exposed by scaling shows the scene.
Every image is finally rounded to 8 bits, as a camera delivers it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

OPAQUE_FROM = 8.0 / 255.0  # intensity at which the object is fully opaque

# JPEG's standard luminance quantisation table (ITU-T T.81, Annex K), in 0..255 units.
_JPEG_LUMA = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99],
], dtype=torch.float32)


@dataclass(frozen=True)
class CameraAugment:
    """Ranges of the camera effects (see the module docstring for what each knob does)."""

    clean_prob: float = 0.2
    scale: tuple[float, float] = (0.6, 1.0)
    max_rotation: float = 12.0
    flip: bool = True
    dark_prob: float = 0.25
    texture: float = 0.25
    gradient: float = 0.2
    contrast: tuple[float, float] = (0.6, 1.4)
    brightness: float = 0.1
    gamma: tuple[float, float] = (0.6, 1.6)
    low_light_prob: float = 0.15
    low_light_gain: tuple[float, float] = (0.2, 0.5)
    blur_prob: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    noise: float = 0.04
    jpeg_prob: float = 0.2
    jpeg_quality: tuple[int, int] = (20, 80)


def _uniform(lo: float, hi: float, m: int, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(m, generator=gen)


def object_alpha(x: torch.Tensor) -> torch.Tensor:
    """Opacity [M, 1, H, W] of the object in images [M, C, H, W] (0..1): a 3x3 closing of the brightest
    channel, opaque from 8/255 up (fills pin-holes of dark fabric, keeps anti-aliased edges soft)."""
    v = x.amax(1, keepdim=True)
    closed = -F.max_pool2d(-F.max_pool2d(v, 3, 1, 1), 3, 1, 1)
    return (closed / OPAQUE_FROM).clamp(0.0, 1.0)


def _place(x: torch.Tensor, alpha: torch.Tensor, scale, angle, shift, flip) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale, rotate, mirror and move image and opacity together (bilinear, outside = empty)."""
    m = x.shape[0]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.zeros(m, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * sign, sin * sign
    theta[:, 1, 0], theta[:, 1, 1] = -sin, cos
    theta[:, :, 2] = -(theta[:, :, :2] @ shift[:, :, None])[:, :, 0]
    grid = F.affine_grid(theta.to(x.device), list(x.shape[:2]) + list(x.shape[2:]), align_corners=False)
    both = F.grid_sample(torch.cat([x, alpha], 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return both[:, :-1], both[:, -1:]


def _backgrounds(h: int, w: int, level, texture, gradient, phi, coarse: torch.Tensor) -> torch.Tensor:
    """Scenes [M, 1, H, W] on ``coarse``'s device: a level, smooth random texture (``coarse`` [M, 1, 4, 4]
    standard normal, upsampled) and a linear illumination gradient in direction ``phi``."""
    dev = coarse.device
    level, texture, gradient, phi = (v.to(dev)[:, None, None, None] for v in (level, texture, gradient, phi))
    tex = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False) * texture
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, device=dev), torch.linspace(-1, 1, w, device=dev), indexing="ij")
    ramp = torch.cos(phi) * xx + torch.sin(phi) * yy
    return (level + tex + ramp * gradient).clamp(0.0, 1.0)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a sigma per image (sigma 0 leaves the image unchanged)."""
    m, c, h, w = x.shape
    r = 3
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=x.device)
    s = sigma.to(x.device).clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (t[None] / s) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [M*C, 2r+1]
    flat = F.pad(x.reshape(1, m * c, h, w), (r, r, r, r), mode="replicate")
    flat = F.conv2d(flat, k[:, None, None, :], groups=m * c)
    flat = F.conv2d(flat, k[:, None, :, None], groups=m * c)
    return flat.view(m, c, h, w)


def _dct_matrix(device) -> torch.Tensor:
    k, n = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    d = torch.cos(math.pi * (2 * n + 1) * k / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(device)


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG-compress images [M, C, H, W] (0..1) at ``quality`` (1..100, one per image): 8x8 block DCT,
    quantisation with the standard luminance table scaled by quality (IJG's formula), inverse DCT."""
    m, c, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    y = F.pad(x, (0, pw, 0, ph), mode="replicate") * 255.0 - 128.0
    hb, wb = (h + ph) // 8, (w + pw) // 8
    blocks = y.view(m, c, hb, 8, wb, 8).permute(0, 1, 2, 4, 3, 5)  # [M, C, hb, wb, 8, 8]
    d = _dct_matrix(x.device)
    q = quality.float().clamp(1, 100)
    factor = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    table = ((_JPEG_LUMA[None] * factor[:, None, None] + 50.0) / 100.0).floor().clamp(1.0, 255.0)
    table = table.to(x.device)[:, None, None, None]  # [M, 1, 1, 1, 8, 8]
    coef = d @ blocks @ d.T
    coef = torch.round(coef / table) * table
    back = (d.T @ coef @ d).permute(0, 1, 2, 4, 3, 5).reshape(m, c, h + ph, w + pw)
    return ((back[:, :, :h, :w] + 128.0) / 255.0).clamp(0.0, 1.0)


def camera_augment(images: torch.Tensor, aug: CameraAugment, gen: torch.Generator) -> torch.Tensor:
    """uint8 images [M, C, H, W] (any device) -> camera-like uint8 images of the same shape.

    Per-image draws come from ``gen`` (a CPU generator); the per-pixel noise comes from a generator on the
    images' device seeded from ``gen``, so a seed gives the same images on the same device.
    """
    m, c, h, w = images.shape
    dev = images.device
    pixels = torch.Generator(device=dev).manual_seed(int(torch.randint(2**62, (), generator=gen)))
    x = images.float() / 255.0
    clean = torch.rand(m, generator=gen) < aug.clean_prob
    keep = (~clean).float()

    scale = torch.where(clean, 1.0, _uniform(*aug.scale, m, gen))
    angle = math.radians(aug.max_rotation) * _uniform(-1, 1, m, gen) * keep
    room = (1.0 - scale)[:, None] + 4.0 / torch.tensor([w, h])[None]  # normalised units; 2 px = 4/size
    shift = (2 * torch.rand(m, 2, generator=gen) - 1) * room
    flip = (torch.rand(m, generator=gen) < 0.5) & torch.tensor(aug.flip)
    obj, alpha = _place(x, object_alpha(x), scale, angle, shift, flip)

    level = torch.where(torch.rand(m, generator=gen) < aug.dark_prob, _uniform(0, 0.08, m, gen),
                        _uniform(0, 1, m, gen)) * keep
    texture = _uniform(0, aug.texture, m, gen) * keep
    gradient = _uniform(-aug.gradient, aug.gradient, m, gen) * keep
    phi = _uniform(0, 2 * math.pi, m, gen)
    coarse = torch.randn(m, 1, 4, 4, generator=pixels, device=dev)
    scene = _backgrounds(h, w, level, texture, gradient, phi, coarse)
    x = alpha * obj + (1.0 - alpha) * scene

    contrast = torch.where(clean, 1.0, _uniform(*aug.contrast, m, gen)).to(dev)[:, None, None, None]
    offset = (_uniform(-aug.brightness, aug.brightness, m, gen) * keep).to(dev)[:, None, None, None]
    mean = x.mean((1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean + offset).clamp(0.0, 1.0)
    log_g = _uniform(math.log(aug.gamma[0]), math.log(aug.gamma[1]), m, gen) * keep
    x = x ** torch.exp(log_g).to(dev)[:, None, None, None]

    dark = (torch.rand(m, generator=gen) < aug.low_light_prob) & ~clean
    gain = torch.where(dark, _uniform(*aug.low_light_gain, m, gen), 1.0)
    x = x * gain.to(dev)[:, None, None, None]

    blurred = (torch.rand(m, generator=gen) < aug.blur_prob) & ~clean
    sigma = torch.where(blurred, _uniform(*aug.blur_sigma, m, gen), 0.0)
    if blurred.any():
        x = _blur(x, sigma)

    std = _uniform(0, aug.noise, m, gen) * keep * torch.where(dark, 2.0, 1.0)
    x = x + torch.randn(m, c, h, w, generator=pixels, device=dev) * std.to(dev)[:, None, None, None]
    x = x.clamp(0.0, 1.0)

    compressed = (torch.rand(m, generator=gen) < aug.jpeg_prob) & ~clean
    quality = torch.randint(aug.jpeg_quality[0], aug.jpeg_quality[1] + 1, (m,), generator=gen)
    if compressed.any():
        idx = compressed.nonzero()[:, 0].to(dev)
        x[idx] = jpeg(x[idx], quality[compressed])
    return torch.round(x * 255.0).to(torch.uint8)

"""OpenCV inpainting behind the input schema of stable-diffusion-inpainting.

A small, CPU-only, deterministic Cog model: it fills the white area of ``mask``
in ``image`` from the surrounding pixels with ``cv2.inpaint`` and returns a list
of PNG files. It accepts every input of the stable-diffusion-inpainting models
on Replicate, so clients written for those run unchanged; the inputs that only
make sense for a diffusion model are accepted, validated and ignored.

Written against the ``BasePredictor``/``predict`` API, which both cog 0.14 (used
to generate ``.cog/openapi_schema.json``) and cog 0.23 / coglet (used to serve)
understand. cog 0.23 logs a deprecation warning for it at start-up; that is
harmless.

Environment:
    INPAINT_DELAY_SECONDS  optional float; sleep this long (in short, cancellable
                           slices) before inpainting. Default 0. Lets tests and
                           demos exercise cancellation, busy slots and timeouts
                           without huge images.
"""

# cog declares inputs as Input(...) defaults of predict(): that is the API, not a bug.
# ruff: noqa: B008

import os
import shutil
import tempfile
import time

import cv2
import numpy as np
from cog import BasePredictor, Input, Path

SCHEDULERS = ["DDIM", "K_EULER", "DPMSolverMultistep", "K_EULER_ANCESTRAL", "PNDM", "KLMS"]
SIZES = list(range(64, 1025, 64))  # 64, 128, ..., 1024

# cv2.inpaint neighbourhood radius in pixels (OpenCV's documented typical value).
INPAINT_RADIUS = 3
MASK_THRESHOLD = 127  # mask pixels above this (0..255 grey) are inpainted

IGNORED = " Accepted for compatibility with stable-diffusion-inpainting and ignored by this model."


def _delay_seconds() -> float:
    raw = os.environ.get("INPAINT_DELAY_SECONDS", "").strip()
    if not raw:
        return 0.0
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 0.0


def _sleep_cancellably(seconds: float) -> None:
    # Short slices so that an asynchronously injected cancellation exception
    # (coglet) or a signal (cog 0.14) is noticed promptly.
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.05, left))


def load_image(path: str) -> np.ndarray:
    """Read an image file as 8-bit BGR; alpha is dropped, greyscale is expanded."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"could not decode image: {os.path.basename(str(path))}")
    return img


def load_mask(path: str, width: int, height: int, invert: bool = False) -> np.ndarray:
    """Read a mask as a binary uint8 array (255 = inpaint) of the given size.

    The mask is converted to grey, resized to the image with nearest-neighbour
    sampling if its size differs, and thresholded at 127.
    """
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError(f"could not decode mask: {os.path.basename(str(path))}")
    if mask.shape[:2] != (height, width):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    flag = cv2.THRESH_BINARY_INV if invert else cv2.THRESH_BINARY
    _, binary = cv2.threshold(mask, MASK_THRESHOLD, 255, flag)
    return binary


def inpaint(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill the non-zero pixels of ``mask`` in ``image`` (Telea's method)."""
    if not mask.any():
        return image.copy()
    return cv2.inpaint(image, mask, INPAINT_RADIUS, cv2.INPAINT_TELEA)


class Predictor(BasePredictor):
    def setup(self) -> None:
        self._outdir = None
        print(f"setup: opencv {cv2.__version__}, numpy {np.__version__}, inpaint radius {INPAINT_RADIUS}")

    def predict(
        self,
        prompt: str = Input(
            description="Input prompt." + IGNORED + " It is only written to the logs.",
            default="",
        ),
        negative_prompt: str = Input(
            description="Things not to see in the output." + IGNORED,
            default="",
        ),
        image: Path = Input(
            description=(
                "Input image to inpaint. Any format OpenCV reads (PNG, JPEG, WebP, ...); "
                "alpha is dropped. The output keeps this image's size."
            ),
        ),
        mask: Path = Input(
            description=(
                "Black and white image used as the mask. White pixels are inpainted and black pixels "
                "are preserved. It is converted to grey, resized to the image (nearest neighbour) "
                "if the sizes differ, and thresholded at 127."
            ),
        ),
        invert_mask: bool = Input(
            description="If true, black pixels are inpainted and white pixels are preserved.",
            default=False,
        ),
        width: int = Input(
            description=(
                "Width of the generated image in pixels, a multiple of 64."
                + IGNORED
                + " The output always has the input image's size."
            ),
            choices=SIZES,
            default=512,
        ),
        height: int = Input(
            description=(
                "Height of the generated image in pixels, a multiple of 64."
                + IGNORED
                + " The output always has the input image's size."
            ),
            choices=SIZES,
            default=512,
        ),
        num_outputs: int = Input(
            description=(
                "Number of images to output. Used: the result is a list of this many PNG files "
                "(identical, since OpenCV inpainting is deterministic)."
            ),
            ge=1,
            le=4,
            default=1,
        ),
        num_inference_steps: int = Input(
            description="Number of denoising steps." + IGNORED,
            ge=1,
            le=500,
            default=50,
        ),
        guidance_scale: float = Input(
            description="Scale for classifier-free guidance." + IGNORED,
            ge=1,
            le=20,
            default=7.5,
        ),
        scheduler: str = Input(
            description="Diffusion scheduler." + IGNORED,
            choices=SCHEDULERS,
            default="DPMSolverMultistep",
        ),
        seed: int = Input(
            description=(
                "Random seed. Leave blank to randomize the seed."
                + IGNORED
                + " The seed in use is written to the logs; the output does not depend on it."
            ),
            default=None,
        ),
    ) -> list[Path]:
        started = time.monotonic()
        if seed is None:
            seed = int.from_bytes(os.urandom(2), "big")
        print(f"Using seed: {seed}", flush=True)

        img = load_image(str(image))
        h, w = img.shape[:2]
        binary = load_mask(str(mask), w, h, invert=bool(invert_mask))
        masked = int(np.count_nonzero(binary))

        delay = _delay_seconds()
        if delay:
            print(f"delaying {delay:g}s (INPAINT_DELAY_SECONDS)")
            _sleep_cancellably(delay)

        result = inpaint(img, binary)

        # Outputs of the previous prediction have been sent by now (one slot);
        # remove them so a long-running server does not fill /tmp.
        if self._outdir:
            shutil.rmtree(self._outdir, ignore_errors=True)
        self._outdir = tempfile.mkdtemp(prefix="inpaint-")
        outputs: list[Path] = []
        for i in range(num_outputs):
            out = os.path.join(self._outdir, f"out-{i}.png")
            if not cv2.imwrite(out, result):
                raise RuntimeError("could not write the output PNG")
            outputs.append(Path(out))

        print(
            f"predict: prompt={prompt!r} image={w}x{h} masked_pixels={masked} "
            f"invert_mask={bool(invert_mask)} num_outputs={num_outputs} "
            f"took={time.monotonic() - started:.3f}s"
        )
        return outputs

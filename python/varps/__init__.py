"""VAR-ParScale: VAR image generation with parallel streams, from Python.

    >>> import varps
    >>> p = varps.Pipeline(var="var_d16.pth", vae="vae_ch160v4096z32.pth")
    >>> images = p.generate(classes=[207, 360], seeds=[0, 1])   # uint8 [2, 256, 256, 3]

Without checkpoints, ``varps.Pipeline()`` is the built-in model "fmnist", a
small VAR trained on Fashion-MNIST (32x32 garments of 10 classes), shipped in
the package; ``varps.Pipeline(preset="d16")`` gives random weights of a
released size (for timing) and ``preset="tiny"`` a random smoke-test model. The engine is the same C++ library
as the ``varps`` command: the same inputs give the same bits.
"""
from __future__ import annotations

import pathlib
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _varps
from ._varps import __version__

__all__ = ["Pipeline", "builtin_model_files", "inspect", "box_mask", "mask_from_image", "__version__"]

ClassId = Union[int, str]
_SAMPLING_KEYS = ("cfg", "top_k", "top_p", "temperature")


def inspect(path: str) -> Dict[str, Any]:
    """A checkpoint's format, tensors (name, dtype, shape), metadata and, when
    it is a VAR, a VQVAE or a ParScale adapter, its configuration (``kind``,
    ``config``). Reads headers only. Raises OSError for an unreadable or
    invalid file."""
    return _varps.inspect(str(path))


def box_mask(box: Sequence[float], side: int, outpaint: bool = False) -> np.ndarray:
    """The edit mask of a box ``(y0, x0, y1, x1)`` in fractions of the image on
    a ``side x side`` token map: float32, 1 keeps the input token, 0
    generates. In-painting (default) generates the box; ``outpaint=True``
    keeps it. Raises ValueError for a box outside [0, 1] or empty."""
    if len(box) != 4:
        raise ValueError(f"box must be (y0, x0, y1, x1), got {box!r}")
    return _varps.box_mask(*[float(v) for v in box], int(side), bool(outpaint))


def mask_from_image(image: Any, side: int) -> np.ndarray:
    """The edit mask of a mask image (uint8 [H, W, 3] or [H, W]; white
    generates, black keeps), resized bilinearly to ``side x side``."""
    img = np.asarray(image, dtype=np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return _varps.mask_from_image(np.ascontiguousarray(img), int(side))


def _as_list(value: Any, n: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name}: expected {n} values (one per image), got {len(value)}")
        return list(value)
    return [value] * n


def _check_sampling(cfg: float, top_k: int, top_p: float, temperature: float) -> None:
    if not (np.isfinite(cfg) and cfg >= 0):
        raise ValueError(f"cfg must be a finite number >= 0, got {cfg!r}")
    if int(top_k) != top_k or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 switches it off), got {top_k!r}")
    if not (0 <= top_p <= 1):
        raise ValueError(f"top_p must be in [0, 1] (0 switches it off), got {top_p!r}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


def _images_nhwc(images: Any, name: str) -> np.ndarray:
    """Anything with the array protocol or DLPack, uint8 [H, W, 3] or [N, H, W, 3]."""
    if hasattr(images, "__dlpack__") and not isinstance(images, np.ndarray):
        images = np.from_dlpack(images)
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 RGB [N, H, W, 3] or [H, W, 3], got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[3] != 3:
        raise ValueError(f"{name} must be uint8 RGB [N, H, W, 3] or [H, W, 3], got shape {arr.shape}")
    return np.ascontiguousarray(arr)

_BUILTIN_VAR_FILES = {"fmnist": "var_d8.pth", "fmnist-d4": "var_d4.pth"}


def builtin_model_files(name: str = "fmnist") -> Tuple[str, str]:
    """The (var, vae) checkpoint paths of a trained model shipped with the
    package: "fmnist" (depth 8, the default) or "fmnist-d4" (depth 4)."""
    if name not in _BUILTIN_VAR_FILES:
        raise ValueError(f"unknown built-in model {name!r} (known: {', '.join(_BUILTIN_VAR_FILES)})")
    folder = pathlib.Path(__file__).resolve().parent / "models" / "fmnist"
    var, vae = folder / _BUILTIN_VAR_FILES[name], folder / "vae.pth"
    for f in (var, vae):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: the built-in model {name!r} is not installed with this package")
    return str(var), str(vae)


class Pipeline:
    """A VAR transformer and its VQVAE tokenizer on one backend.

    Args:
        var, vae: the official checkpoints (``.pth`` or ``.safetensors``).
        preset: instead of checkpoints, deterministic random weights of a
            released size ("d16", "d20", "d24", "d30", "d36"), or "tiny".
            Neither: the built-in trained model "fmnist" (``builtin_model_files``).
        device: "cpu", or "cuda" in builds with the CUDA backend.
        precision: matrix-product operands: "fp32"; "bf16" (CPU and CUDA); "int8" (CPU);
            "fp16" (CUDA). Their error against fp32 is in docs/tolerances.md.
        threads: CPU threads; 0 uses all cores.
        cuda_graphs: CUDA: replay recorded steps (False runs every op).

    Raises FileNotFoundError / OSError for missing or invalid checkpoints,
    ValueError for bad arguments.
    """

    def __init__(self, var: Optional[str] = None, vae: Optional[str] = None, preset: Optional[str] = None,
                 device: str = "cpu", precision: str = "fp32", threads: int = 0, cuda_graphs: bool = True):
        if var is None and vae is None and preset is None:
            var, vae = builtin_model_files("fmnist")
        self._p = _varps._Pipeline(None if var is None else str(var), None if vae is None else str(vae), preset,
                                   device, precision, int(threads), bool(cuda_graphs))

    # ---- description ----
    @property
    def var_config(self) -> Dict[str, Any]:
        """The VAR transformer's configuration (depth, embed_dim, patch_nums, num_classes, ...)."""
        return self._p.var_config()

    @property
    def vae_config(self) -> Dict[str, Any]:
        """The VQVAE tokenizer's configuration."""
        return self._p.vae_config()

    @property
    def num_classes(self) -> int:
        """Classes 0..num_classes-1; num_classes itself (or "uncond") is unconditional."""
        return self._p.var_config()["num_classes"]

    @property
    def image_size(self) -> int:
        """Side of the square images the model generates and edits."""
        return self._p.image_size()

    @property
    def device(self) -> str:
        return self._p.device()

    @property
    def backend_info(self) -> str:
        return self._p.backend_info()

    @property
    def threads(self) -> int:
        return self._p.threads()

    @property
    def weights(self) -> str:
        """Where the weights came from (checkpoint paths or the preset)."""
        return self._p.weights()

    # ---- requests ----
    def _class_id(self, c: ClassId) -> int:
        if isinstance(c, str):
            if c != "uncond":
                raise ValueError(f"class {c!r}: expected an integer id or 'uncond'")
            return self.num_classes
        if isinstance(c, bool) or int(c) != c:
            raise ValueError(f"class {c!r}: expected an integer id or 'uncond'")
        if not 0 <= int(c) <= self.num_classes:
            raise ValueError(f"class {c} is out of range: this model has classes 0..{self.num_classes - 1}, "
                             f"and 'uncond' (= {self.num_classes}) for unconditional")
        return int(c)

    def _requests(self, classes: Union[ClassId, Sequence[ClassId]], seeds: Union[None, int, Sequence[int]],
                  streams: Optional[int], params: Optional[Sequence[Dict[str, Any]]],
                  sampling: Dict[str, Any]) -> Tuple[list, ...]:
        if isinstance(classes, (int, str)):
            classes = [classes]
        ids = [self._class_id(c) for c in classes]
        if streams is not None:
            if int(streams) != streams or streams < 1:
                raise ValueError(f"streams must be an integer >= 1, got {streams!r}")
            ids = [c for c in ids for _ in range(int(streams))]
        if params is not None:
            if len(ids) == 1 and len(params) > 1:
                ids = ids * len(params)
            if len(params) != len(ids):
                raise ValueError(f"params: expected one dict per image ({len(ids)}), got {len(params)}")
        n = len(ids)
        if n == 0:
            raise ValueError("nothing to generate: no classes given")
        if seeds is None:
            seeds = 0
        if isinstance(seeds, (int, np.integer)):
            seeds = [int(seeds) + i for i in range(n)]
        seeds = _as_list(seeds, n, "seeds")
        for s in seeds:
            if int(s) != s or not 0 <= int(s) < 2**64:
                raise ValueError(f"seed {s!r} is not a non-negative 64-bit integer")
        columns = {k: _as_list(sampling[k], n, k) for k in _SAMPLING_KEYS}
        if params is not None:
            for i, d in enumerate(params):
                unknown = set(d) - {"class", "seed", *_SAMPLING_KEYS}
                if unknown:
                    raise ValueError(f"params[{i}]: unknown keys {sorted(unknown)} "
                                     f"(known: class, seed, cfg, top_k, top_p, temperature)")
                if "class" in d:
                    ids[i] = self._class_id(d["class"])
                if "seed" in d:
                    seeds[i] = int(d["seed"])
                for k in _SAMPLING_KEYS:
                    if k in d:
                        columns[k][i] = d[k]
        for i in range(n):
            _check_sampling(*(columns[k][i] for k in _SAMPLING_KEYS))
        return (ids, [int(s) for s in seeds], [float(v) for v in columns["cfg"]], [int(v) for v in columns["top_k"]],
                [float(v) for v in columns["top_p"]], [float(v) for v in columns["temperature"]])

    def generate(self, classes: Union[ClassId, Sequence[ClassId]], seeds: Union[None, int, Sequence[int]] = None,
                 cfg: Union[float, Sequence[float]] = 4.0, top_k: Union[int, Sequence[int]] = 900,
                 top_p: Union[float, Sequence[float]] = 0.95, temperature: Union[float, Sequence[float]] = 1.0,
                 streams: Optional[int] = None, params: Optional[Sequence[Dict[str, Any]]] = None,
                 return_tokens: bool = False, progress: Optional[Callable[[int, int], None]] = None):
        """Images of the given classes, all in one batched pass per scale.

        Args:
            classes: class ids (or "uncond"), one image each.
            seeds: one per image, or the first seed (image i uses seeds + i); default 0.
            cfg, top_k, top_p, temperature: sampling, one value or one per image
                (defaults: the official demo's).
            streams: P images of each class, seeds continuing the count.
            params: one dict per image with any of "class", "seed", "cfg",
                "top_k", "top_p", "temperature" (overrides the arguments).
            return_tokens: also return each image's token maps
                ([image][scale] lists of pn*pn ints, row-major).
            progress: called with (scales done, scales) after each scale.

        Returns:
            uint8 [N, H, W, 3], or (images, tokens) with return_tokens.

        The GIL is released while the engine runs; Ctrl-C (KeyboardInterrupt)
        stops it at the next scale boundary.
        """
        req = self._requests(classes, seeds, streams, params,
                             dict(cfg=cfg, top_k=top_k, top_p=top_p, temperature=temperature))
        images, tokens = self._p.generate(*req, bool(return_tokens), progress)
        return (images, tokens) if return_tokens else images

    def tokenize(self, images: Any) -> List[List[List[int]]]:
        """Multi-scale token maps of images (uint8 [N, H, W, 3] or [H, W, 3]
        at the model's resolution): [image][scale] lists of pn*pn ints."""
        return self._p.tokenize(_images_nhwc(images, "images"))

    def reconstruct(self, images: Any) -> np.ndarray:
        """Images through the VQVAE and back (encode, quantize at the VAR's
        scales, decode): uint8 of the input's shape."""
        arr = _images_nhwc(images, "images")
        out = self._p.reconstruct(arr)
        return out[0] if np.asarray(images).ndim == 3 else out

    def edit(self, image: Any = None, tokens: Optional[Sequence] = None, box: Optional[Sequence[float]] = None,
             mask: Any = None, outpaint: bool = False, classes: Union[ClassId, Sequence[ClassId]] = "uncond",
             seeds: Union[None, int, Sequence[int]] = None, cfg: Union[float, Sequence[float]] = 4.0,
             top_k: Union[int, Sequence[int]] = 900, top_p: Union[float, Sequence[float]] = 0.95,
             temperature: Union[float, Sequence[float]] = 1.0, streams: Optional[int] = None,
             return_tokens: bool = False, progress: Optional[Callable[[int, int], None]] = None):
        """Zero-shot editing, as the ``varps edit`` command does it.

        Args:
            image: the image to edit (uint8 [H, W, 3] at the model's resolution),
                or ``tokens``: one image's token maps ([scale] lists).
            box: (y0, x0, y1, x1) in fractions: generated (in-painting), or kept
                with ``outpaint=True``; or ``mask``: a mask image (uint8, white =
                generate) of the image's size, or a float [side, side] keep-mask
                on the last token map (``box_mask``).
            classes: one edit per class ("uncond": plain in-painting).
            streams: variants of each edit, seeds continuing.

        Returns uint8 [N, H, W, 3] (and the edited token maps with return_tokens).
        """
        if (image is None) == (tokens is None):
            raise ValueError("give the image to edit: image= or tokens=")
        if (box is None) == (mask is None):
            raise ValueError("give the region to edit: box= or mask=")
        if outpaint and box is None:
            raise ValueError("outpaint applies to box=; a mask says itself what to generate")
        side = self.var_config["patch_nums"][-1]
        if image is not None:
            arr = _images_nhwc(image, "image")
            if arr.shape[0] != 1:
                raise ValueError("edit takes one image; call it once per image")
            if arr.shape[1] != self.image_size or arr.shape[2] != self.image_size:
                raise ValueError(f"image is {arr.shape[2]}x{arr.shape[1]}: this model edits "
                                 f"{self.image_size}x{self.image_size} images")
            tokens = self.tokenize(arr)[0]
        if box is not None:
            keep = box_mask(box, side, outpaint)
        else:
            m = np.asarray(mask)
            if m.dtype == np.uint8:
                if m.shape[:2] != (self.image_size, self.image_size):
                    raise ValueError(f"mask image is {m.shape[1]}x{m.shape[0]}: it must have the image's size, "
                                     f"{self.image_size}x{self.image_size}")
                keep = mask_from_image(m, side)
            else:
                keep = np.ascontiguousarray(m, dtype=np.float32)
        req = self._requests(classes, seeds, streams, None,
                             dict(cfg=cfg, top_k=top_k, top_p=top_p, temperature=temperature))
        n = len(req[0])
        inputs = [[list(map(int, t)) for t in tokens]] * n
        images, out_tokens = self._p.edit(*req, inputs, [keep] * n, bool(return_tokens), progress)
        return (images, out_tokens) if return_tokens else images

    # ---- adapters and memory ----
    def attach_adapter(self, path: str) -> None:
        """Attach a ParScale adapter (safetensors): every image of later
        requests runs as its P aggregated streams. Replaces an attached one."""
        self._p.attach_adapter(str(path))

    def detach_adapter(self) -> None:
        self._p.detach_adapter()

    # ---- fast modes (docs/fast-modes.md) ----
    def set_fast_modes(self, cfg_until_scale: int = 0, prune: float = 0.0, prune_scales: int = 2,
                       refiner: Optional[str] = None, refine_from_scale: int = 0) -> None:
        """Training-free fast modes for later generate() and edit() calls; the
        defaults switch them all off (the exact path). cfg_until_scale: guidance
        in scales 1..N only. prune: the fraction of tokens left out at the last
        prune_scales scales (FastVAR). refiner: a smaller VAR checkpoint (or the
        built-in name "fmnist-d4") that draws the scales from refine_from_scale
        on (CoDe). Scales count from 1. Raises ValueError for settings that do
        not fit the model."""
        if refiner is not None:
            if refiner in _BUILTIN_VAR_FILES:
                refiner = builtin_model_files(refiner)[0]
            self._p.attach_refiner(str(refiner))
        elif refine_from_scale == 0:
            self._p.detach_refiner()
        self._p.set_fast_modes(int(cfg_until_scale), float(prune), int(prune_scales), int(refine_from_scale))

    @property
    def adapter_streams(self) -> int:
        """P of the attached adapter; 1 without one."""
        return self._p.adapter_streams()

    def plan_memory(self, classes: Union[ClassId, Sequence[ClassId]], cfg: Union[float, Sequence[float]] = 4.0,
                    streams: Optional[int] = None) -> Dict[str, int]:
        """The memory (bytes) a generate() call of these images would plan:
        weights, kv_cache, activations, workspace, total, and the rows per pass."""
        req = self._requests(classes, None, streams, None, dict(cfg=cfg, top_k=900, top_p=0.95, temperature=1.0))
        return self._p.plan_memory(req[0], req[2])

    def __repr__(self) -> str:
        return f"varps.Pipeline({self.var_config['description']}, device={self.device!r})"

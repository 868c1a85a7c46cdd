"""Rays: one view's rays, and the pool of training rays that batches are drawn from on the device."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import jax_dataclasses as jdc
import numpy as np

from tensorf.data.cameras import Ndc, pixel_rays
from tensorf.data.views import Views
from tensorf.errors import UserError


@jdc.pytree_dataclass
class Rays:
    """A batch of rays; every field has the ray axis first so it can be sharded across devices.

    origins: (..., 3); directions: (..., 3), unit length (depth is distance along them), in
    the scene's space: world, or NDC for forward-facing captures (Cameras.ndc); radii
    (...,): the radius at unit distance of the cone through each pixel's footprint (pixel_rays;
    mip-NeRF's frustums), None for rays that are not a camera's pixels; background (..., 3): the
    colour behind each ray (a turntable's background fixed to the camera), None: the scene's flat
    one; exposure (..., 3, 4): the affine colour map [A | b] of the photo each ray belongs to,
    applied to the field's colour before the background (training with --exposure.mode), None:
    the field's own colours; target_depth (...,): the measured distance along the ray to what its
    pixel sees (--data.depth; 0: not measured), for the depth loss, None: no depth.
    """

    origins: jax.Array
    directions: jax.Array
    radii: jax.Array | None = None
    background: jax.Array | None = None
    exposure: jax.Array | None = None
    target_depth: jax.Array | None = None


def view_rays(views: Views, index: int) -> Rays:
    """All rays of one view, flattened to (H*W, 3)."""
    o, d, r = views.cameras.rays(index)
    return Rays(origins=o.reshape(-1, 3), directions=d.reshape(-1, 3), radii=r.reshape(-1),
                background=_pixel_background(views, index))


def _pixel_background(views: Views, index: int) -> np.ndarray | None:
    """The background fixed to the camera of view `index`, one row per pixel (h * w, 3), or None
    when the views carry none."""
    if views.background is None:
        return None
    h, w = views.size(index)
    return np.asarray(views.background[index, :h, :w], np.float32).reshape(-1, 3)


@jdc.pytree_dataclass
class RayPool:
    """Every training ray, held on the device: the images, the cameras, and the ids of the rays
    in play, so a batch is drawn inside the jitted step with no host transfer.

    The images are held one after another, each at its own size (no padding when photos in
    portrait and landscape share a capture), and a ray's id is its pixel's place there:
    view * height * width + row * width + column when the views share a size (`size`), else
    offsets[view] + row * widths[view] + column. Filtering keeps the array shapes: ids (N,)
    holds the `count` rays in play first (in id order), then padding, so a filtered pool never
    retraces the step. Memory: the packed images (3 or 6 bytes a pixel) plus 4 bytes a ray,
    against 36 for origins, directions and colours in float32 (lego at 800x800: 0.6 GB, not 2.3).

    colors (P, 3) (P: every view's pixels), as integers over `levels` (packed_colors: 8-bit
    values held exactly in uint8, the rest within 8e-6 in uint16; a quarter or half the float32
    bytes), or float32 when levels is None; c2w (V, 4, 4); fx, fy, cx, cy (V,);
    distortion (V, 6) (lens parameters of `camera_model`); ids (N,) int32; count () int32;
    starts (V + 1,) int32: view v's rays in play are ids[starts[v]:starts[v + 1]]; size
    (height, width) shared by every view, or None: then offsets (V + 1,) int32 (the views' first
    pixels, then P) and widths (V,) int32 say where each view lies; background (P, 3): each
    ray's background fixed to the camera (a turntable's, as much memory again as the images),
    or None, packed over `background_levels` as colors are; depths (P,) float16: each pixel's
    measured depth along its camera's viewing axis (Views.depths; 0: none), or None.
    """

    colors: jax.Array
    c2w: jax.Array
    fx: jax.Array
    fy: jax.Array
    cx: jax.Array
    cy: jax.Array
    distortion: jax.Array
    ids: jax.Array
    count: jax.Array
    starts: jax.Array
    size: jdc.Static[tuple[int, int] | None]
    offsets: jax.Array | None = None
    widths: jax.Array | None = None
    background: jax.Array | None = None
    depths: jax.Array | None = None
    ndc: jdc.Static[Ndc | None] = None
    camera_model: jdc.Static[str] = "pinhole"
    levels: jdc.Static[int | None] = None
    background_levels: jdc.Static[int | None] = None

    @staticmethod
    def from_views(views: Views) -> "RayPool":
        """The pool of every ray of `views` that its mask keeps (host arrays; place it with
        jax.device_put)."""
        n = len(views.names)
        sizes = np.asarray([views.size(i) for i in range(n)], np.int64)  # (height, width) each
        shared = bool((sizes == sizes[0]).all()) and tuple(sizes[0]) == views.images.shape[1:3]
        offsets = np.concatenate([[0], np.cumsum(sizes.prod(axis=1))])
        if offsets[-1] >= 2**31:
            h, w = sizes.max(axis=0)
            raise UserError(f"{n} views of up to {w}x{h} pixels hold more rays than the int32 ray ids can count; "
                            "use --data.downscale")
        offsets = offsets.astype(np.int32)
        background = None if views.background is None else np.asarray(views.background, np.float32)
        if shared:  # the arrays as they are
            colors = np.asarray(views.images, np.float32).reshape(-1, 3)
            background = None if background is None else background.reshape(-1, 3)
            keep = None if views.masks is None else np.asarray(views.masks).reshape(-1)
            depths = None if views.depths is None else np.asarray(views.depths).reshape(-1)
        else:  # each view's own pixels, the padding left out
            def own(a: np.ndarray) -> np.ndarray:
                return np.concatenate([a[i, :h, :w].reshape(-1, *a.shape[3:]) for i, (h, w) in enumerate(sizes)])

            colors = own(np.asarray(views.images, np.float32))
            background = None if background is None else own(background)
            keep = None if views.masks is None else own(np.asarray(views.masks))
            depths = None if views.depths is None else own(np.asarray(views.depths))
        ids = np.arange(offsets[-1], dtype=np.int32) if keep is None else np.flatnonzero(keep).astype(np.int32)
        if not len(ids):
            raise UserError("the masks of the training views keep no pixel; check the capture's mask_path images")
        cams = views.cameras
        vec = lambda v: np.asarray(v, np.float32)  # noqa: E731
        # The needles in the ids' own dtype (ids < 2^31): a mixed-type search converts all the ids
        # first, 4 s for lego's 64M on 2 cores.
        starts = np.searchsorted(ids, offsets).astype(np.int32)
        colors, levels = packed_colors(colors)
        background, background_levels = (None, None) if background is None else packed_colors(background)
        return RayPool(colors=colors, levels=levels, background_levels=background_levels, c2w=vec(cams.c2w),
                       fx=vec(cams.fx), fy=vec(cams.fy), cx=vec(cams.cx), cy=vec(cams.cy),
                       distortion=vec(cams.distortion), ids=ids, count=np.int32(len(ids)),
                       starts=starts, size=tuple(int(v) for v in sizes[0]) if shared else None,
                       offsets=None if shared else offsets, widths=None if shared else sizes[:, 1].astype(np.int32),
                       background=background, ndc=cams.ndc, camera_model=cams.model,
                       depths=None if depths is None else depths.astype(np.float16))

    def first_pixels(self) -> jax.Array:
        """(V + 1,) int32: the id of each view's first pixel, then the pixel count."""
        if self.size is None:
            return self.offsets
        return jnp.arange(self.c2w.shape[0] + 1, dtype=jnp.int32) * (self.size[0] * self.size[1])

    def __len__(self) -> int:
        """Rays in play (a host transfer: call it at schedule events, not per step)."""
        return int(self.count)

    def rays(self, ids: jax.Array) -> tuple[Rays, jax.Array]:
        """The rays with ray ids `ids` (B,) and their colours (B, 3)."""
        o, d, r = self.geometry(ids)
        bg = None if self.background is None else _unpacked(self.background[ids], self.background_levels)
        target = None
        if self.depths is not None:
            # Depth maps measure along the camera's viewing axis (-z in OpenGL axes); rays run
            # along unit directions, so a ray off the axis reaches the same depth farther out.
            forward = -self.c2w[self.views_of(ids), :3, 2]
            target = self.depths[ids].astype(jnp.float32) / jnp.maximum(jnp.sum(d * forward, -1), 1e-6)
        return (Rays(origins=o, directions=d, radii=r, background=bg, target_depth=target),
                _unpacked(self.colors[ids], self.levels))

    def geometry(self, ids: jax.Array, c2w: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Origins, directions (B, 3) and radii (B,) of the rays with ids `ids` (B,), cast from
        the cameras c2w (V, 4, 4) in place of the pool's own (refined poses:
        tensorf.training.cameras)."""
        view = self.views_of(ids)
        if self.size is not None:
            y, x = jnp.divmod(ids - view * (self.size[0] * self.size[1]), self.size[1])
        else:
            y, x = jnp.divmod(ids - self.offsets[view], self.widths[view])
        c2w = self.c2w if c2w is None else c2w
        return pixel_rays(c2w[view], self.fx[view], self.fy[view], self.cx[view], self.cy[view], x, y,
                          self.ndc, self.distortion[view], self.camera_model)

    def views_of(self, ids: jax.Array) -> jax.Array:
        """The training view (B,) int32 of each ray id (B,)."""
        if self.size is not None:
            return ids // (self.size[0] * self.size[1])
        return jnp.searchsorted(self.offsets, ids, side="right") - 1

    def draw(self, key: jax.Array, size: int, single_image: bool = False) -> tuple[Rays, jax.Array]:
        """`size` rays drawn uniformly, with replacement, from the rays in play, or (single_image)
        from those of one view, picked with a chance proportional to its rays in play (NeRF's
        original Blender batching). A pure function of the key, so a resumed run draws exactly the
        batches the uninterrupted run would have."""
        return self.rays(self.draw_ids(key, size, single_image))

    def draw_ids(self, key: jax.Array, size: int, single_image: bool = False) -> jax.Array:
        """The ray ids (size,) that draw's rays are cast through."""
        if not single_image:
            return self.ids[jax.random.randint(key, (size,), 0, self.count)]
        k_view, k_rays = jax.random.split(key)
        view = jnp.searchsorted(self.starts, jax.random.randint(k_view, (), 0, self.count), side="right") - 1
        lo, hi = self.starts[view], self.starts[view + 1]
        return self.ids[jax.random.randint(k_rays, (size,), lo, hi)]

    def filtered(self, keep, params, chunk: int = 16384) -> "RayPool":
        """The pool without the rays that keep(params, rays) -> (B,) bool rejects, same shapes.
        keep is a static argument: pass the same function object each time (Schedule.ray_filter
        keeps its own) or every call compiles anew."""
        fn, args = self.filter_program(keep, params, chunk)
        return fn(*args)

    def filter_program(self, keep, params, chunk: int = 16384) -> tuple:
        """(jitted function, arguments) that filtered runs; params may be shapes, so that the
        training loop can compile it ahead of a mask update."""
        return _filtered, (keep, chunk, params, self)


# Colours as the device holds them: a batch's few thousand are unpacked in the step, while the
# pool's hundreds of millions stay small (lego at 800x800: 768 MB of float32, 384 as uint16).
# Packed in chunks of 1 MB of floats, which stay in cache between the passes (chunk sizes
# compared in benchmarks/results.md, under startup.py).
PACK_CHUNK = 1 << 18


def packed_colors(colors: np.ndarray) -> tuple[np.ndarray, int]:
    """Colours in [0, 1] (float32, any shape) as integers and their number of levels: uint8 over
    255 when every value is an 8-bit one (8-bit images read at their size, JPEGs decoded
    smaller), exactly; else uint16 over 65535, within 0.5 / 65535 (averaged or composited
    pixels)."""
    flat = np.ascontiguousarray(colors, np.float32).reshape(-1)
    packed = _packed(flat, 255, np.uint8)
    if packed is not None:
        return packed.reshape(colors.shape), 255
    return _packed(flat, 65535, np.uint16).reshape(colors.shape), 65535


def _packed(flat: np.ndarray, levels: int, dtype) -> np.ndarray | None:
    """flat (M,) rounded to `levels` levels as `dtype`; None when levels is 255 and a value is
    not an 8-bit one. A chunk at a time into buffers made once: no second float copy."""
    n = min(PACK_CHUNK, len(flat))
    scaled, rounded = np.empty(n, np.float32), np.empty(n, np.float32)
    out = np.empty(flat.shape, dtype)
    for start in range(0, len(flat), PACK_CHUNK):
        k = min(PACK_CHUNK, len(flat) - start)
        x, r = scaled[:k], rounded[:k]
        np.multiply(flat[start:start + k], np.float32(levels), out=x)
        np.clip(np.rint(x, out=r), 0, levels, out=r)
        if levels == 255 and np.abs(np.subtract(x, r, out=x), out=x).max(initial=0.0) > 1e-3:
            return None
        out[start:start + k] = r
    return out


def _unpacked(values: jax.Array, levels: int | None) -> jax.Array:
    """float32 colours of packed values (packed_colors); as they are when levels is None."""
    return values if levels is None else values.astype(jnp.float32) / jnp.float32(levels)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _filtered(keep, chunk: int, params, pool: RayPool) -> RayPool:
    n = pool.ids.shape[0]
    padded = jnp.pad(pool.ids, (0, -n % chunk))
    kept = jax.lax.map(lambda ids: keep(params, pool.rays(ids)[0]), padded.reshape(-1, chunk)).reshape(-1)[:n]
    kept = kept & (jnp.arange(n) < pool.count)
    (where,) = jnp.nonzero(kept, size=n, fill_value=0)
    count = jnp.sum(kept, dtype=jnp.int32)
    ids = pool.ids[where]
    in_play = jnp.where(jnp.arange(n) < count, ids, jnp.iinfo(jnp.int32).max)
    starts = jnp.searchsorted(in_play, pool.first_pixels()).astype(jnp.int32)
    return dataclasses.replace(pool, ids=ids, count=count, starts=starts)

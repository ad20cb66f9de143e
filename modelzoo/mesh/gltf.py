"""GLBs that backends hand over (TRELLIS.2, Hunyuan3D, SAM 3D's mesh): checked, recentred, and
rewritten as the browser's compact copy.

* `check_glb`: the structural checks a worker runs before storing anything (the GLB container,
  the JSON, every buffer view and accessor inside the binary chunk, no external URIs, indices in
  range, images that decode, sizes within `GltfLimits`). The Khronos glTF-Validator is the
  reference; tests run it on what the engine writes (frontend/scripts/validate-gltf.mjs), and a
  worker needs no Node for these checks.
* `recentred_glb`: the same GLB under one new root node that moves it by -centre (the original
  bytes untouched otherwise, but data: URI images moved into the binary chunk): the object frame's
  convention, centred, with the layout keeping the pose.
* `compact_glb`: the browser copy: every triangle primitive with its node transforms baked in,
  positions int16 and normals int8 (KHR_mesh_quantization), UVs uint16, colours RGBA8, textures
  downscaled to at most 1024 px and re-encoded as WebP (EXT_texture_webp), materials kept; a mesh
  over `COMPACT_MAX_TRIANGLES` is decimated first (quadric edge collapse, fast-simplification, with
  the borders of each primitive kept: UV seams and open edges stay where they are). TRELLIS.2's own
  export keeps up to a million faces; the annotator's view of a few hundred pixels does not need them.

glTF is +Y up and in metres by specification: a backend whose frame differs maps it before.
"""
from __future__ import annotations

import base64
import io
import logging
import json
import re
import struct
from dataclasses import dataclass, field

import numpy as np

from modelzoo.mesh.glb import _DTYPES, _NCOMP, _node_matrix, _quantise_normals
from modelzoo.mesh.meshing import vertex_normals

log = logging.getLogger(__name__)

__all__ = ["GltfError", "GltfLimits", "GlbSummary", "check_glb", "recentred_glb", "compact_glb",
           "primitives", "parse_glb", "vertex_colours_from_textures"]


class GltfError(ValueError):
    """A GLB the engine refuses: what is wrong with it, in words."""


@dataclass(frozen=True)
class GltfLimits:
    max_bytes: int = 256 * 1024 * 1024
    max_vertices: int = 5_000_000
    max_faces: int = 10_000_000
    max_texture_px: int = 8192
    max_images: int = 64


@dataclass
class Primitive:
    positions: np.ndarray  # V x 3 float64, world (scene) frame
    indices: np.ndarray  # F x 3 int64
    normals: np.ndarray | None = None
    uv: np.ndarray | None = None  # V x 2
    colors: np.ndarray | None = None  # V x 4 uint8
    material: int | None = None


@dataclass
class GlbSummary:
    """What a checked GLB holds (the candidate's `received` record takes it)."""

    gltf: dict
    blob: bytes
    primitives: list[Primitive]
    num_vertices: int = 0
    num_faces: int = 0
    textured: bool = False
    vertex_colours: bool = False
    textures: list[dict] = field(default_factory=list)  # [{"mime", "width", "height", "bytes"}]
    extensions: list[str] = field(default_factory=list)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        p = np.concatenate([prim.positions for prim in self.primitives])
        return p.min(axis=0), p.max(axis=0)


_FLOAT, _UBYTE, _BYTE, _SHORT, _USHORT, _UINT = 5126, 5121, 5120, 5122, 5123, 5125
_ARRAY, _ELEMENTS = 34962, 34963
_IMAGE_MIMES = {"image/png", "image/jpeg", "image/webp"}
# Extensions whose meaning survives the compact copy as they are (materials, texture transforms)
# or that the compact copy itself writes; a GLB requiring any other is refused.
_KNOWN_EXTENSIONS = {
    "KHR_materials_emissive_strength", "KHR_materials_ior", "KHR_materials_specular", "KHR_materials_transmission",
    "KHR_materials_clearcoat", "KHR_materials_sheen", "KHR_materials_unlit", "KHR_materials_volume",
    "KHR_materials_iridescence", "KHR_materials_anisotropy", "KHR_texture_transform", "KHR_mesh_quantization",
    "EXT_texture_webp",
}


def parse_glb(data: bytes) -> tuple[dict, bytes]:
    """(glTF JSON, binary chunk) of a GLB, or GltfError."""
    if len(data) < 20:
        raise GltfError("not a GLB: shorter than its header")
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF":
        raise GltfError("not a GLB (glTF binary): bad magic; send the .glb, not a .gltf with side files")
    if version != 2:
        raise GltfError(f"glTF version {version}; only glTF 2.0 is supported")
    if length != len(data):
        raise GltfError(f"the GLB header says {length} bytes, the file has {len(data)}")
    offset, gltf, blob, index = 12, None, b"", 0
    while offset < len(data):
        if offset + 8 > len(data):
            raise GltfError("a GLB chunk header is truncated")
        size, kind = struct.unpack_from("<I4s", data, offset)
        if offset + 8 + size > len(data):
            raise GltfError("a GLB chunk reaches past the end of the file")
        chunk = data[offset + 8: offset + 8 + size]
        if index == 0 and kind != b"JSON":
            raise GltfError("the first GLB chunk is not JSON")
        if kind == b"JSON":
            try:
                gltf = json.loads(chunk)
            except ValueError as exc:
                raise GltfError(f"the GLB's JSON does not parse: {exc}") from None
        elif kind == b"BIN\x00" and index == 1:
            blob = bytes(chunk)
        offset += 8 + size
        index += 1
    if not isinstance(gltf, dict):
        raise GltfError("the GLB's JSON is not an object")
    return gltf, blob


def _list(gltf: dict, key: str) -> list:
    value = gltf.get(key, [])
    if not isinstance(value, list):
        raise GltfError(f"'{key}' is not an array")
    return value


def _read_accessor(gltf: dict, blob: bytes, index) -> np.ndarray:
    accessors = _list(gltf, "accessors")
    if not isinstance(index, int) or not 0 <= index < len(accessors):
        raise GltfError(f"accessor {index} does not exist")
    acc = accessors[index]
    if "sparse" in acc:
        raise GltfError(f"accessor {index} is sparse; sparse accessors are not supported")
    if "bufferView" not in acc:
        raise GltfError(f"accessor {index} has no bufferView")
    views = _list(gltf, "bufferViews")
    if not 0 <= acc["bufferView"] < len(views):
        raise GltfError(f"accessor {index} names buffer view {acc['bufferView']}, which does not exist")
    view = views[acc["bufferView"]]
    if view.get("buffer", 0) != 0:
        raise GltfError(f"buffer view {acc['bufferView']} is not in the GLB's own binary chunk")
    if acc.get("componentType") not in _DTYPES or acc.get("type") not in _NCOMP:
        raise GltfError(f"accessor {index} has an unknown component type or type")
    dt = np.dtype(_DTYPES[acc["componentType"]]).newbyteorder("<")
    ncomp, count = _NCOMP[acc["type"]], int(acc.get("count", 0))
    if count <= 0:
        raise GltfError(f"accessor {index} has no elements")
    start = int(view.get("byteOffset", 0)) + int(acc.get("byteOffset", 0))
    element = dt.itemsize * ncomp
    stride = int(view.get("byteStride") or element)
    end = start + stride * (count - 1) + element
    view_end = int(view.get("byteOffset", 0)) + int(view.get("byteLength", 0))
    if start < 0 or stride < element or end > view_end or view_end > len(blob):
        raise GltfError(f"accessor {index} reaches past the end of its buffer view or of the binary chunk")
    raw = np.frombuffer(blob, np.uint8, count=end - start, offset=start)
    rows = np.lib.stride_tricks.as_strided(raw, shape=(count, element), strides=(stride, 1))
    out = np.ascontiguousarray(rows).view(dt).reshape(count, ncomp)
    if acc.get("normalized"):
        info = np.iinfo(dt)
        out = np.maximum(out.astype(np.float64) / info.max, -1.0)
    return out


def primitives(gltf: dict, blob: bytes) -> list[Primitive]:
    """The triangle primitives of the default scene with their node transforms applied."""
    nodes, meshes = _list(gltf, "nodes"), _list(gltf, "meshes")
    scenes = _list(gltf, "scenes")
    roots = scenes[gltf.get("scene", 0)].get("nodes", []) if scenes else list(range(len(nodes)))
    out: list[Primitive] = []
    seen: set[int] = set()

    def visit(ni, parent: np.ndarray, depth: int) -> None:
        if not isinstance(ni, int) or not 0 <= ni < len(nodes):
            raise GltfError(f"node {ni} does not exist")
        if ni in seen or depth > 64:
            raise GltfError("the node hierarchy has a cycle or is deeper than 64")
        seen.add(ni)
        node = nodes[ni]
        m = parent @ _node_matrix(node)
        if "mesh" in node:
            if not 0 <= node["mesh"] < len(meshes):
                raise GltfError(f"node {ni} names mesh {node['mesh']}, which does not exist")
            normal_matrix = np.linalg.inv(m[:3, :3]).T
            for prim in meshes[node["mesh"]].get("primitives", []):
                if prim.get("mode", 4) != 4:
                    continue  # points and lines are not part of a candidate's surface
                if "extensions" in prim:
                    raise GltfError("compressed primitives (Draco, meshopt) are not supported: send plain accessors")
                attrs = prim.get("attributes", {})
                if "POSITION" not in attrs:
                    raise GltfError("a primitive has no POSITION")
                pos = _read_accessor(gltf, blob, attrs["POSITION"]).astype(np.float64)
                if pos.shape[1] != 3:
                    raise GltfError("POSITION is not VEC3")
                pos = pos @ m[:3, :3].T + m[:3, 3]
                if "indices" in prim:
                    idx = _read_accessor(gltf, blob, prim["indices"]).astype(np.int64).ravel()
                else:
                    idx = np.arange(len(pos))
                if len(idx) % 3:
                    raise GltfError("a triangle primitive's index count is not a multiple of 3")
                if len(idx) and (idx.min() < 0 or idx.max() >= len(pos)):
                    raise GltfError("a primitive's indices point past its vertices")
                p = Primitive(positions=pos, indices=idx.reshape(-1, 3), material=prim.get("material"))
                if "NORMAL" in attrs:
                    n = _read_accessor(gltf, blob, attrs["NORMAL"]).astype(np.float64)[:, :3] @ normal_matrix.T
                    p.normals = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
                if "TEXCOORD_0" in attrs:
                    p.uv = _read_accessor(gltf, blob, attrs["TEXCOORD_0"]).astype(np.float64)[:, :2]
                if "COLOR_0" in attrs:
                    c = _read_accessor(gltf, blob, attrs["COLOR_0"]).astype(np.float64)
                    if c.max(initial=0) > 1.0:  # unnormalised integers are not valid colours
                        raise GltfError("COLOR_0 holds values above 1")
                    if c.shape[1] == 3:
                        c = np.concatenate([c, np.ones((len(c), 1))], axis=1)
                    p.colors = (np.clip(c, 0, 1) * 255 + 0.5).astype(np.uint8)
                for name, arr in (("NORMAL", p.normals), ("TEXCOORD_0", p.uv), ("COLOR_0", p.colors)):
                    if arr is not None and len(arr) != len(pos):
                        raise GltfError(f"{name} has {len(arr)} elements for {len(pos)} positions")
                out.append(p)
        for child in node.get("children", []):
            visit(child, m, depth + 1)

    for ni in roots:
        visit(ni, np.eye(4), 0)
    return out


_DATA_URI = re.compile(r"data:(image/(?:png|jpeg|webp));base64,(.*)", re.S)


def _image_bytes(gltf: dict, blob: bytes, index: int) -> bytes:
    image = _list(gltf, "images")[index]
    if "uri" in image:  # only embedded data: URIs pass check_glb
        return base64.b64decode(_DATA_URI.fullmatch(image["uri"]).group(2))
    view = _list(gltf, "bufferViews")[image["bufferView"]]
    start = int(view.get("byteOffset", 0))
    return blob[start:start + int(view["byteLength"])]


def check_glb(data: bytes, limits: GltfLimits = GltfLimits()) -> GlbSummary:
    """Everything the engine needs to trust a GLB, or GltfError saying what is wrong."""
    from PIL import Image

    if len(data) > limits.max_bytes:
        raise GltfError(f"the GLB has {len(data)} bytes, more than the limit of {limits.max_bytes}")
    gltf, blob = parse_glb(data)
    asset = gltf.get("asset")
    if not isinstance(asset, dict) or not str(asset.get("version", "")).startswith("2."):
        raise GltfError("the GLB's asset.version is not 2.x")
    required = [e for e in gltf.get("extensionsRequired", []) if e not in _KNOWN_EXTENSIONS]
    if required:
        raise GltfError(f"the GLB requires extensions the engine cannot read: {', '.join(required)}")
    buffers = _list(gltf, "buffers")
    for i, buf in enumerate(buffers):
        if "uri" in buf:
            raise GltfError(f"buffer {i} refers to an external URI; a GLB must embed its data")
    if len(buffers) > 1:
        raise GltfError("the GLB has several buffers; only its own binary chunk is supported")
    if buffers and int(buffers[0].get("byteLength", 0)) > len(blob):
        raise GltfError("buffer 0 is longer than the GLB's binary chunk")
    for i, view in enumerate(_list(gltf, "bufferViews")):
        end = int(view.get("byteOffset", 0)) + int(view.get("byteLength", 0))
        if view.get("buffer", 0) != 0 or end > len(blob) or int(view.get("byteOffset", 0)) < 0:
            raise GltfError(f"buffer view {i} reaches outside the GLB's binary chunk")
    images = _list(gltf, "images")
    if len(images) > limits.max_images:
        raise GltfError(f"the GLB has {len(images)} images, more than {limits.max_images}")
    textures = []
    for i, image in enumerate(images):
        if "uri" in image:  # a data: URI embeds the image (Hunyuan3D writes these); any other is external
            found = _DATA_URI.fullmatch(str(image["uri"])[:64] + "x") if isinstance(image["uri"], str) else None
            if found is None:
                raise GltfError(f"image {i} refers to an external URI; a GLB must embed its images")
            try:
                raw = base64.b64decode(_DATA_URI.fullmatch(image["uri"]).group(2), validate=True)
            except (ValueError, AttributeError):
                raise GltfError(f"image {i}'s data: URI is not valid base64") from None
            mime = found.group(1)
        else:
            if "bufferView" not in image or not 0 <= image["bufferView"] < len(_list(gltf, "bufferViews")):
                raise GltfError(f"image {i} has no buffer view")
            if image.get("mimeType") not in _IMAGE_MIMES:
                raise GltfError(f"image {i} is {image.get('mimeType')!r}; send PNG, JPEG or WebP textures")
            raw, mime = _image_bytes(gltf, blob, i), image["mimeType"]
        try:
            with Image.open(io.BytesIO(raw)) as im:
                width, height = im.size
                if max(width, height) > limits.max_texture_px:
                    raise GltfError(f"image {i} is {width} x {height} px, larger than {limits.max_texture_px}")
                im.load()
        except GltfError:
            raise
        except Exception as exc:  # PIL raises many kinds of errors on broken images
            raise GltfError(f"image {i} does not decode: {' '.join(str(exc).split())[:200]}") from None
        textures.append({"mime": mime, "width": width, "height": height, "bytes": len(raw),
                         "embedded": "data_uri" if "uri" in image else "buffer_view"})
    texture_list = _list(gltf, "textures")
    for i, tex in enumerate(texture_list):
        source = tex.get("source", tex.get("extensions", {}).get("EXT_texture_webp", {}).get("source"))
        if not isinstance(source, int) or not 0 <= source < len(images):
            raise GltfError(f"texture {i} has no image the engine can read")
    prims = primitives(gltf, blob)
    if not prims:
        raise GltfError("the GLB holds no triangle mesh")
    nv = sum(len(p.positions) for p in prims)
    nf = sum(len(p.indices) for p in prims)
    if nv > limits.max_vertices or nf > limits.max_faces:
        raise GltfError(f"the GLB has {nv} vertices and {nf} faces; the limits are {limits.max_vertices} "
                        f"and {limits.max_faces}")
    if nf == 0:
        raise GltfError("the GLB's meshes have no triangles")
    for p in prims:
        if not np.isfinite(p.positions).all():
            raise GltfError("a POSITION holds NaN or infinite values")
    lo, hi = np.min([p.positions.min(axis=0) for p in prims], axis=0), np.max(
        [p.positions.max(axis=0) for p in prims], axis=0)
    if float((hi - lo).max()) > 1000.0:
        raise GltfError(f"the mesh is {float((hi - lo).max()):.0f} m across: not metres, or not one object")
    materials = _list(gltf, "materials")
    textured = False
    for p in prims:
        if p.material is None:
            continue
        if not 0 <= p.material < len(materials):
            raise GltfError(f"a primitive names material {p.material}, which does not exist")
        if p.uv is not None and _material_textures(materials[p.material]):
            textured = True
    for m in materials:
        for index in _material_textures(m):
            if not 0 <= index < len(texture_list):
                raise GltfError(f"a material names texture {index}, which does not exist")
    return GlbSummary(gltf=gltf, blob=blob, primitives=prims, num_vertices=nv, num_faces=nf, textured=textured,
                      vertex_colours=any(p.colors is not None for p in prims), textures=textures,
                      extensions=sorted(set(gltf.get("extensionsUsed", []))))


def _material_textures(material: dict) -> list[int]:
    """Texture indices a material uses (textureInfo objects anywhere in it, extensions included)."""
    found = []

    def walk(obj, key=""):
        if isinstance(obj, dict):
            if key.endswith("Texture") and isinstance(obj.get("index"), int):
                found.append(obj["index"])
            for k, v in obj.items():
                walk(v, k)
        elif isinstance(obj, list):
            for v in obj:
                walk(v, key)

    walk(material)
    return found


def _pack(gltf: dict, blob: bytes) -> bytes:
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * ((4 - len(js) % 4) % 4)
    blob = bytes(blob) + b"\x00" * ((4 - len(blob) % 4) % 4)
    parts = [struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(js) + (8 + len(blob) if blob else 0)),
             struct.pack("<I4s", len(js), b"JSON"), js]
    if blob:
        parts += [struct.pack("<I4s", len(blob), b"BIN\x00"), blob]
    return b"".join(parts)


def recentred_glb(summary: GlbSummary, centre: np.ndarray) -> bytes:
    """The checked GLB with its default scene's roots put under one new node translated by -centre."""
    gltf = json.loads(json.dumps(summary.gltf))
    nodes = gltf.setdefault("nodes", [])
    scenes = gltf.get("scenes") or [{"nodes": list(range(len(nodes)))}]
    gltf["scenes"] = scenes
    scene = scenes[gltf.get("scene", 0)]
    nodes.append({"name": "data-engine recentre", "translation": [float(-c) for c in centre],
                  "children": list(scene.get("nodes", []))})
    scene["nodes"] = [len(nodes) - 1]
    blob = bytearray(summary.blob)
    for image in gltf.get("images", []):  # data: URIs (Hunyuan3D's) moved into the binary chunk, as GLB wants
        if "uri" in image:
            found = _DATA_URI.fullmatch(image.pop("uri"))
            while len(blob) % 4:
                blob.append(0)
            data = base64.b64decode(found.group(2))
            gltf.setdefault("bufferViews", []).append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)})
            blob.extend(data)
            image["bufferView"], image["mimeType"] = len(gltf["bufferViews"]) - 1, found.group(1)
    if blob:
        if not gltf.get("buffers"):
            gltf["buffers"] = [{}]
        gltf["buffers"][0]["byteLength"] = len(blob)
    return _pack(gltf, bytes(blob))


class _Writer:
    def __init__(self) -> None:
        self.blob = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None, stride: int | None = None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        v = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            v["target"] = target
        if stride is not None:
            v["byteStride"] = stride
        self.blob.extend(data)
        self.views.append(v)
        return len(self.views) - 1

    def accessor(self, data: bytes, component: int, count: int, kind: str, *, target: int, stride=None,
                 normalized=False, vmin=None, vmax=None) -> int:
        a = {"bufferView": self.view(data, target, stride), "componentType": component, "count": int(count),
             "type": kind}
        if normalized:
            a["normalized"] = True
        if vmin is not None:
            a["min"], a["max"] = vmin, vmax
        self.accessors.append(a)
        return len(self.accessors) - 1


def _webp(raw: bytes, max_px: int, quality: int, *, lossless_alpha: bool = False) -> tuple[bytes, int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as im:
        im.load()
        mode = "RGBA" if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info else "RGB"
        im = im.convert(mode)
        if max(im.size) > max_px:
            k = max_px / max(im.size)
            im = im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        im.save(out, "WEBP", quality=quality, method=4, exact=lossless_alpha)
        return out.getvalue(), im.width, im.height


COMPACT_MAX_TRIANGLES = 60_000  # with 1024 px WebP textures, about 1 MB on the wire
DECIMATE_MIN_TRIANGLES = 500  # a small part of a large mesh keeps at least this many


def decimated(primitive: Primitive, target_triangles: int) -> Primitive:
    """`primitive` with at most about `target_triangles` triangles (itself when it has no more). Each
    kept vertex keeps the normal, UV and colour of one of the vertices collapsed into it; border edges
    (UV seams: glTF splits a vertex where its UVs differ) are not collapsed, so textures stay on."""
    target_triangles = max(int(target_triangles), DECIMATE_MIN_TRIANGLES)
    if len(primitive.indices) <= target_triangles:
        return primitive
    import fast_simplification

    try:
        *_, collapses = fast_simplification.simplify(
            primitive.positions.astype(np.float64), primitive.indices.astype(np.int32),
            target_count=target_triangles, return_collapses=True, preserve_border=True)
        _, faces, mapping = fast_simplification.replay_simplification(
            primitive.positions.astype(np.float32), primitive.indices.astype(np.int32), collapses)
    except (ValueError, RuntimeError, IndexError) as exc:  # a mesh the simplifier cannot take: sent whole
        log.warning("compact copy not decimated (%s): %d triangles sent as they are", exc, len(primitive.indices))
        return primitive
    if len(faces) == 0:
        return primitive
    kept = np.full(int(mapping.max()) + 1, -1, np.int64)
    kept[mapping[::-1]] = np.arange(len(mapping))[::-1]  # one original vertex per new one (the first)
    pick = (lambda a: None if a is None else a[kept])
    return Primitive(positions=primitive.positions[kept], indices=np.asarray(faces, np.int64),
                     normals=pick(primitive.normals), uv=pick(primitive.uv), colors=pick(primitive.colors),
                     material=primitive.material)


def compact_glb(summary: GlbSummary, *, centre: np.ndarray | None = None, max_texture_px: int = 1024,
                quality: int = 80, max_triangles: int = COMPACT_MAX_TRIANGLES) -> bytes:
    """The browser's copy of a checked GLB (recentred by `centre`): see the module's docstring."""
    gltf_in, blob_in = summary.gltf, summary.blob
    centre = np.zeros(3) if centre is None else np.asarray(centre, np.float64)
    w = _Writer()
    nodes, meshes = [], []
    total = sum(len(p.indices) for p in summary.primitives)
    share = min(1.0, max_triangles / max(total, 1))  # every primitive keeps the same share of its triangles
    for p in summary.primitives:
        p = decimated(p, int(np.ceil(len(p.indices) * share)))
        v = p.positions - centre
        lo, hi = v.min(axis=0), v.max(axis=0)
        mid = 0.5 * (lo + hi)
        half = max(0.5 * float((hi - lo).max()), 1e-9)
        q = np.round((v - mid) / half * 32767.0).clip(-32767, 32767).astype(np.int16)
        qpad = np.zeros((len(q), 4), np.int16)
        qpad[:, :3] = q
        attrs = {"POSITION": w.accessor(qpad.tobytes(), _SHORT, len(q), "VEC3", target=_ARRAY, stride=8,
                                        normalized=True, vmin=[int(x) for x in q.min(axis=0)],
                                        vmax=[int(x) for x in q.max(axis=0)])}
        normals = p.normals if p.normals is not None else vertex_normals(v, p.indices)
        if normals is not None:
            attrs["NORMAL"] = w.accessor(_quantise_normals(normals).tobytes(), _BYTE, len(q), "VEC3",
                                         target=_ARRAY, stride=4, normalized=True)
        if p.uv is not None:
            if p.uv.min() >= 0.0 and p.uv.max() <= 1.0:
                uv = np.round(p.uv * 65535.0).astype(np.uint16)
                attrs["TEXCOORD_0"] = w.accessor(uv.tobytes(), _USHORT, len(q), "VEC2", target=_ARRAY,
                                                 normalized=True)
            else:  # repeating textures: float UVs
                attrs["TEXCOORD_0"] = w.accessor(p.uv.astype(np.float32).tobytes(), _FLOAT, len(q), "VEC2",
                                                 target=_ARRAY)
        if p.colors is not None:
            attrs["COLOR_0"] = w.accessor(np.ascontiguousarray(p.colors, np.uint8).tobytes(), _UBYTE, len(q),
                                          "VEC4", target=_ARRAY, normalized=True)
        flat = p.indices.ravel()
        if len(q) < 65535:
            idx = w.accessor(flat.astype(np.uint16).tobytes(), _USHORT, len(flat), "SCALAR", target=_ELEMENTS)
        else:
            idx = w.accessor(flat.astype(np.uint32).tobytes(), _UINT, len(flat), "SCALAR", target=_ELEMENTS)
        prim = {"attributes": attrs, "indices": idx, "mode": 4}
        if p.material is not None:
            prim["material"] = p.material
        meshes.append({"primitives": [prim]})
        nodes.append({"mesh": len(meshes) - 1, "translation": [float(x) for x in mid], "scale": [half] * 3})
    images_out = []
    for i, _image in enumerate(_list(gltf_in, "images")):
        data, width, height = _webp(_image_bytes(gltf_in, blob_in, i), max_texture_px, quality)
        images_out.append({"bufferView": w.view(data), "mimeType": "image/webp"})
    textures_out = []
    for tex in _list(gltf_in, "textures"):
        source = tex.get("source", tex.get("extensions", {}).get("EXT_texture_webp", {}).get("source"))
        t = {"extensions": {"EXT_texture_webp": {"source": source}}}
        if "sampler" in tex:
            t["sampler"] = tex["sampler"]
        textures_out.append(t)
    used = {"KHR_mesh_quantization"}
    required = {"KHR_mesh_quantization"}
    if textures_out:
        used.add("EXT_texture_webp")
        required.add("EXT_texture_webp")
    used |= {e for e in gltf_in.get("extensionsUsed", []) if e in _KNOWN_EXTENSIONS and e.startswith("KHR_mat")}
    used |= {"KHR_texture_transform"} & set(gltf_in.get("extensionsUsed", []))
    gltf = {
        "asset": {"version": "2.0", "generator": "data-engine modelzoo.mesh.gltf (compact)"},
        "scene": 0, "scenes": [{"nodes": list(range(len(nodes)))}], "nodes": nodes, "meshes": meshes,
        "accessors": w.accessors, "bufferViews": w.views, "buffers": [{"byteLength": len(w.blob)}],
        "extensionsUsed": sorted(used), "extensionsRequired": sorted(required),
    }
    if _list(gltf_in, "materials"):
        gltf["materials"] = gltf_in["materials"]
    if textures_out:
        gltf["textures"], gltf["images"] = textures_out, images_out
        if _list(gltf_in, "samplers"):
            gltf["samplers"] = gltf_in["samplers"]
    return _pack(gltf, bytes(w.blob))


def vertex_colours_from_textures(summary: GlbSummary) -> list[np.ndarray]:
    """Per primitive, RGBA uint8 per vertex as the mesh shows without lighting: the base colour
    texture sampled at the vertex's UV, times the base colour factor and the vertex colour (for
    previews and for the exports' vertex-coloured readers)."""
    from PIL import Image

    gltf, materials = summary.gltf, _list(summary.gltf, "materials")
    decoded: dict[int, np.ndarray] = {}
    out = []
    for p in summary.primitives:
        rgba = np.full((len(p.positions), 4), 1.0)
        pbr = materials[p.material].get("pbrMetallicRoughness", {}) if p.material is not None else {}
        rgba *= np.asarray(pbr.get("baseColorFactor", [1, 1, 1, 1]), np.float64)[None, :]
        info = pbr.get("baseColorTexture")
        if info is not None and p.uv is not None:
            tex = _list(gltf, "textures")[info["index"]]
            source = tex.get("source", tex.get("extensions", {}).get("EXT_texture_webp", {}).get("source"))
            if source not in decoded:
                with Image.open(io.BytesIO(_image_bytes(gltf, summary.blob, source))) as im:
                    decoded[source] = np.asarray(im.convert("RGBA"), np.float64) / 255.0
            img = decoded[source]
            h, wd = img.shape[:2]
            u = np.mod(p.uv[:, 0], 1.0) * (wd - 1)
            v = np.mod(p.uv[:, 1], 1.0) * (h - 1)
            rgba *= img[np.round(v).astype(int), np.round(u).astype(int)]
        if p.colors is not None:
            rgba *= p.colors / 255.0
        out.append((np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8))
    return out

"""Gaussian splats: the 3DGS PLY (plyfile reads what the engine writes), SPZ (the layout Spark reads),
the checks, the built-in model's surface splat."""
import gzip
import io
import struct

import numpy as np
import pytest
from plyfile import PlyData

from modelzoo.splats import (
    Gaussians,
    SplatError,
    check_gaussians,
    gaussians_on_surface,
    ply_bytes,
    read_ply,
    read_spz,
    read_splat,
    spz_bytes,
)
from modelzoo.splats.gaussians import SH_C0


def random_splat(n=500, sh_rest=0, seed=0) -> Gaussians:
    rng = np.random.default_rng(seed)
    return Gaussians(
        positions=rng.uniform(-0.4, 0.4, (n, 3)).astype(np.float32),
        scales=np.log(rng.uniform(0.002, 0.02, (n, 3))).astype(np.float32),
        rotations=rng.normal(size=(n, 4)).astype(np.float32),
        opacities=rng.normal(1, 1, n).astype(np.float32),
        sh_dc=rng.normal(0, 1, (n, 3)).astype(np.float32),
        sh_rest=rng.normal(0, 0.2, (n, 3, sh_rest)).astype(np.float32) if sh_rest else None,
    )


@pytest.mark.parametrize("k", [0, 3, 15])
def test_plyfile_reads_the_3dgs_ply_the_engine_writes(k):
    g = random_splat(sh_rest=k)
    data = ply_bytes(g)
    ply = PlyData.read(io.BytesIO(data))
    v = ply["vertex"].data
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *[f"f_rest_{i}" for i in range(3 * k)],
             "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert list(v.dtype.names) == names and ply["vertex"].count == 500
    assert np.array_equal(v["rot_0"], g.rotations[:, 0]) and np.array_equal(v["opacity"], g.opacities)
    if k:  # channel-major, as the reference's save_ply flattens features_rest (N, 3, K)
        assert np.array_equal(v["f_rest_1"], g.sh_rest[:, 0, 1]) and np.array_equal(v[f"f_rest_{k}"], g.sh_rest[:, 1, 0])
    back = read_ply(data)
    assert np.array_equal(back.positions, g.positions) and back.sh_degree == {0: 0, 3: 1, 15: 3}[k]


def test_spz_has_the_layout_spark_reads():
    g = check_gaussians(random_splat(n=1000), max_gaussians=10_000)
    data = spz_bytes(g, sort=False)
    raw = gzip.decompress(data)
    magic, version, n, degree, frac, flags, _ = struct.unpack_from("<IIIBBBB", raw)
    assert (magic, version, n, degree, frac) == (0x5053474E, 3, 1000, 0, 12)
    assert len(raw) == 16 + 1000 * (9 + 1 + 3 + 3 + 4)
    # Spark's decoding (src/spz.ts) of the first Gaussian's centre, alpha and colour
    b = raw[16:25]
    x = ((b[2] << 24 | b[1] << 16 | b[0] << 8) - (1 << 32 if b[2] & 0x80 else 0)) >> 8
    assert abs(x / 4096 - g.positions[0, 0]) <= 1 / 8192
    alpha = raw[16 + 9000] / 255
    assert abs(alpha - 1 / (1 + np.exp(-g.opacities[0]))) <= 1 / 255
    r = (raw[16 + 10000] / 255 - 0.5) * (SH_C0 / 0.15) + 0.5
    assert abs(r - np.clip(0.5 + SH_C0 * g.sh_dc[0, 0], 0.5 - SH_C0 * 3.33, 0.5 + SH_C0 * 3.33)) < 0.01
    back = read_spz(data)
    assert np.abs(back.positions - g.positions).max() <= 1 / 8192
    q = g.rotations / np.linalg.norm(g.rotations, axis=1, keepdims=True)
    assert np.abs((back.rotations * q).sum(axis=1)).min() > 0.999  # same rotation (q or -q)


def test_spz_sorted_along_a_z_curve_is_smaller_and_holds_the_same_gaussians():
    g = gaussians_on_surface(*_sphere(), n=20_000, seed=1)
    unsorted, ordered = spz_bytes(g, sort=False), spz_bytes(g)
    assert len(ordered) < 0.95 * len(unsorted)
    a, b = read_spz(unsorted), read_spz(ordered)
    assert np.array_equal(np.sort(a.positions, axis=0), np.sort(b.positions, axis=0))


def _sphere():
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=3, radius=0.2)
    colours = np.tile(np.array([[200, 80, 40, 255]], np.uint8), (len(m.vertices), 1))
    return np.asarray(m.vertices), np.asarray(m.faces), colours


def test_surface_gaussians_lie_on_the_surface_as_flat_discs_of_its_colour():
    v, f, c = _sphere()
    g = gaussians_on_surface(v, f, c, 3000, seed=2)
    r = np.linalg.norm(g.positions, axis=1)
    assert np.abs(r - 0.2).max() < 0.01  # on the (faceted) sphere
    assert np.all(g.colors_rgb() == [200, 80, 40])
    scales = np.exp(g.scales)
    assert np.all(scales[:, 2] < 0.2 * scales[:, 0])  # thin along the normal
    # the rotation turns the disc's thin axis (+Z) onto the outward normal
    from modelzoo.synth.rotations import quat_to_matrix
    normals = np.stack([quat_to_matrix(q)[:, 2] for q in g.rotations[:50]])
    assert np.all(np.abs((normals * (g.positions[:50] / r[:50, None])).sum(axis=1)) > 0.9)


@pytest.mark.parametrize("break_it, reason", [
    (lambda g: g.positions.__setitem__((3, 1), np.nan), "positions holds 1 NaN or infinite values (first at Gaussian 3)"),
    (lambda g: g.opacities.__setitem__(0, np.inf), "opacities holds 1 NaN or infinite"),
    (lambda g: g.rotations.__setitem__(5, 0.0), "a rotation quaternion is zero"),
])
def test_check_refuses_non_finite_values_and_zero_rotations(break_it, reason):
    g = random_splat()
    break_it(g)
    with pytest.raises(SplatError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        check_gaussians(g, max_gaussians=10_000)


def test_check_refuses_more_gaussians_than_the_limit():
    with pytest.raises(SplatError, match="500 Gaussians, more than the limit of 499"):
        check_gaussians(random_splat(), max_gaussians=499)


def test_read_splat_refuses_missing_fields_truncation_and_other_files():
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 2\n" + b"".join(
        b"property float %s\n" % n for n in [b"x", b"y", b"z", b"f_dc_0", b"f_dc_1", b"f_dc_2", b"opacity"]
    ) + b"end_header\n"
    with pytest.raises(SplatError, match="lacks the 3DGS fields scale_0, scale_1, scale_2, rot_0"):
        read_splat(header + b"\0" * 4 * 7 * 2)
    good = ply_bytes(random_splat(n=10))
    with pytest.raises(SplatError, match="unreadable PLY"):
        read_splat(good[:-30])
    with pytest.raises(SplatError, match="neither a PLY"):
        read_splat(b"glTF....")
    with pytest.raises(SplatError, match="should hold"):
        read_spz(gzip.compress(gzip.decompress(spz_bytes(random_splat(n=10)))[:-5]))

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from submission.data.files import write_text
from submission.data.images import ImageReadError, read_rgb


def _write(path, img):
    ok, buf = cv2.imencode(path.suffix, img)
    assert ok
    buf.tofile(path)
    return path


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)


def test_rgb_png_is_converted_from_bgr(tmp_path, rgb):
    path = _write(tmp_path / "a.png", rgb[..., ::-1])  # cv2 writes BGR
    np.testing.assert_array_equal(read_rgb(path), rgb)


def test_rgba_tiff_drops_alpha(tmp_path, rgb):
    bgra = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)])
    out = read_rgb(_write(tmp_path / "a.tiff", bgra))
    assert out.shape == (40, 50, 3)
    np.testing.assert_array_equal(out, rgb)


def test_grayscale_is_repeated(tmp_path, rgb):
    gray = rgb[..., 0]
    out = read_rgb(_write(tmp_path / "g.TIF", gray))
    assert out.shape == (40, 50, 3) and (out == gray[..., None]).all()


def test_16bit_tiff_keeps_the_top_byte(tmp_path, rgb):
    img16 = rgb.astype(np.uint16) * 257
    np.testing.assert_array_equal(read_rgb(_write(tmp_path / "d.tiff", img16[..., ::-1])), rgb)


def test_non_ascii_path_with_spaces(tmp_path, rgb):
    folder = tmp_path / "Zellen ä ü"
    folder.mkdir()
    assert read_rgb(_write(folder / "bild 1.png", rgb)).shape == (40, 50, 3)


@pytest.mark.parametrize("content,message", [
    (b"", "empty file"),
    (b"not an image at all", "not a readable image"),
    (b"II*\x00" + b"\x00" * 40, "not a readable image"),  # a corrupt TIFF
])
def test_bad_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.tiff"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message) as e:
        read_rgb(path)
    assert "bad.tiff" in str(e.value)


def test_truncated_jpeg_is_refused(tmp_path, rgb):
    ok, buf = cv2.imencode(".jpg", rgb)
    path = tmp_path / "t.jpg"
    path.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read_rgb(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="cannot open"):
        read_rgb(tmp_path / "nope.jpg")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_give_the_documented_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "x.tiff"
    path.write_bytes(data)
    try:
        img = read_rgb(path)
    except ImageReadError:
        return
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    write_text(target, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temp file left behind

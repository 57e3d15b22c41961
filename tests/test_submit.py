import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from submission.data.classes import CLASSES
from submission.data.splits import sort_images
from submission.errors import KitError
from submission.predict.submit import (
    check_submission,
    ensemble_logits,
    logits_frame,
    read_labels,
    submission_frame,
    write_submission,
)

IMAGES = ["0.TIF", "1.TIF", "2.TIF", "10.TIF", "11.TIF"]


def _logits(seed, images=IMAGES):
    return logits_frame(images, np.random.default_rng(seed).normal(size=(len(images), len(CLASSES))))


def test_numeric_order():
    assert sort_images(["10.TIF", "2.TIF", "1.TIF", "a.TIF"]) == ["1.TIF", "2.TIF", "10.TIF", "a.TIF"]


def test_ensemble_joins_on_image_not_row_order():
    a, b = _logits(0), _logits(1)
    shuffled = b.sample(frac=1.0, random_state=3).reset_index(drop=True)
    pd.testing.assert_frame_equal(ensemble_logits([a, b]), ensemble_logits([a, shuffled]))
    mean = ensemble_logits([a, b]).set_index("Image")
    expected = (a.set_index("Image") + b.set_index("Image")) / 2
    np.testing.assert_allclose(mean.loc[IMAGES].to_numpy(), expected.loc[IMAGES].to_numpy())


def test_mixed_class_lists_are_refused():
    a, b = _logits(0), _logits(1)
    b = b[["Image", *reversed(CLASSES)]]
    with pytest.raises(KitError, match="one class list"):
        ensemble_logits([a, b])


def test_runs_over_different_images_are_refused():
    with pytest.raises(KitError, match="different images"):
        ensemble_logits([_logits(0), _logits(1, IMAGES[:-1])])


def test_valid_submission_is_written(tmp_path):
    sub = submission_frame(_logits(0))
    assert list(sub["Image"]) == IMAGES
    assert all(CLASSES[i] == l for i, l in zip(sub["LabelID"], sub["Label"]))
    write_submission(tmp_path / "s.csv", sub, IMAGES)
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "Image,Label,LabelID"


@pytest.mark.parametrize("breakage,message", [
    (lambda s: s.iloc[:-1], "missing"),
    (lambda s: pd.concat([s, s.iloc[:1]]), "duplicate"),
    (lambda s: s.assign(LabelID=s["LabelID"].where(s.index != 0, (s["LabelID"] + 1) % 11)), "disagree"),
    (lambda s: s.assign(Label=s["Label"].where(s.index != 0, "platelet")), "disagree"),
    (lambda s: s.rename(columns={"Label": "Class"}), "header"),
    (lambda s: s.iloc[::-1], "order"),
])
def test_broken_submissions_are_refused_and_nothing_is_written(tmp_path, breakage, message):
    sub = breakage(submission_frame(_logits(0)))
    with pytest.raises(KitError, match=message):
        write_submission(tmp_path / "s.csv", sub, IMAGES)
    assert not (tmp_path / "s.csv").exists()


rows = st.lists(st.tuples(st.sampled_from(IMAGES + ["3.TIF", "x", ""]), st.sampled_from(list(CLASSES) + ["", "cell"]),
                          st.one_of(st.integers(-2, 12), st.sampled_from(["8.0", " 8", "8 ", "1e1"]), st.text(max_size=3))), max_size=8)


@settings(max_examples=200, deadline=None)
@given(rows)
def test_random_csvs_never_pass_unless_valid_and_never_crash(rows):
    sub = pd.DataFrame(rows, columns=["Image", "Label", "LabelID"]).astype(str)
    problems = check_submission(sub, IMAGES)
    valid = (
        sorted(r[0] for r in rows) == sorted(IMAGES)
        and [r[0] for r in rows] == IMAGES
        and all(r[1] in CLASSES and str(r[2]) == str(CLASSES.index(r[1])) for r in rows)
    )
    assert (problems == []) == valid


@settings(max_examples=50, deadline=None)
@given(st.permutations(range(5)), st.integers(0, 10))
def test_ensemble_ignores_row_order(perm, seed):
    a, b = _logits(seed), _logits(seed + 1)
    pd.testing.assert_frame_equal(ensemble_logits([a, b]), ensemble_logits([a.iloc[list(perm)], b]))


def test_labels_by_name_or_id(tmp_path):
    (tmp_path / "WBC2.csv").write_text("Image,Label\n0.TIF,monocyte\n1.TIF,basophil\n")
    assert read_labels(tmp_path, "WBC2").to_dict() == {"0.TIF": 9, "1.TIF": 0}
    (tmp_path / "ids.csv").write_text("Image,LabelID\n0.TIF,3\n")
    assert read_labels(tmp_path / "ids.csv", "WBC2").to_dict() == {"0.TIF": 3}

import pytest

from vramscribe.core.footprints import FootprintBook, builtin_estimate
from vramscribe.core.profiles import contention, growth
from vramscribe.errors import UnknownModel


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (("tiny", "float16", 1, "cuda"), 600),
        (("tiny.en", "int8", 1, "cuda"), 500),
        (("large-v3", "default", 1, "cuda"), 4600),
        (("large-v3", "int8_float16", 1, "cuda"), 3000),
        (("medium", "float32", 1, "cuda"), 400 + 2 * 2200),
        (("small", "float16", 8, "cuda"), 1200 + 1500),
        (("base", "default", 1, "cpu"), 600 - 400 + 200),
        (("Systran/faster-whisper-large-v3", "float16", 1, "cuda"), 4600),
        (("turbo", "float16", 1, "cuda"), 2550),
    ],
)
def test_builtin_estimates_follow_the_design_table(
    key: tuple[str, str, int, str], expected: float
) -> None:
    assert builtin_estimate(key) == pytest.approx(expected)


def test_unknown_model_has_no_estimate() -> None:
    with pytest.raises(UnknownModel, match="whisper-xxl"):
        builtin_estimate(("whisper-xxl", "float16", 1, "cuda"))


def test_learned_peak_overrides_builtin_and_grows_with_audio() -> None:
    book = FootprintBook()
    key = ("small", "float16", 1, "cuda")
    assert book.estimate(key, 0) == pytest.approx(1200)
    peak = 1500 * growth(1800)
    book.observe_peak(key, peak, 1800)
    assert book.loaded_mb(key) == pytest.approx(1500)
    # Its own band: the peak as measured, nothing added.
    assert book.estimate(key, 1800) == pytest.approx(peak)
    assert book.estimate(key, 1000) == pytest.approx(peak)
    # A longer band: grown from the measured peak by the growth model only.
    assert book.estimate(key, 3600) == pytest.approx(peak * growth(3600) / growth(1800))
    # A shorter band: the loaded size grown to the band's top, never above the longer peak.
    assert book.estimate(key, 0) == pytest.approx(1500 * growth(60))


def test_peaks_of_short_files_do_not_compound_with_growth_for_long_ones() -> None:
    book = FootprintBook()
    key = ("small", "float16", 1, "cuda")
    book.observe_peak(key, 1200 * 1.10, 50)  # a short file at the top of its jitter
    book.observe_peak(key, 1200 * 1.04, 3500)  # an hour-long file, measured
    assert book.estimate(key, 3550) == pytest.approx(1200 * 1.04 * growth(3550) / growth(3500))
    # The old estimate: the short file's high-water mark times an hour of growth guess.
    assert book.estimate(key, 3550) < 1200 * 1.10 / growth(50) * growth(3550) * 0.9
    assert book.estimate(key, 40) == pytest.approx(1200 * 1.10)


def test_learned_peak_is_a_high_water_mark() -> None:
    book = FootprintBook()
    key = ("tiny", "int8", 1, "cuda")
    book.observe_peak(key, 900, 0)
    book.observe_peak(key, 700, 0)
    assert book.loaded_mb(key) == pytest.approx(900)
    assert book.learned[key].samples == 2
    book.observe_peak(key, 1000, 0)
    assert book.loaded_mb(key) == pytest.approx(1000)


def test_book_round_trips_through_json() -> None:
    book = FootprintBook()
    book.observe_peak(("medium", "float16", 1, "cuda"), 2900, 600)
    book.observe_speed(("medium", "float16", 1, "cuda"), 25.0)
    book.observe_speed(("medium", "float16", 8, "cuda"), 40.0, alone=False)
    again = FootprintBook.from_json(book.to_json())
    assert again.learned == book.learned
    assert again.bands == book.bands and again.bands
    assert again.speeds == book.speeds and len(again.speeds) == 2
    assert again.alone == book.alone and list(again.alone) == [("medium", "float16", 1, "cuda")]
    assert again.estimate(("medium", "float16", 1, "cuda"), 60) == pytest.approx(
        book.estimate(("medium", "float16", 1, "cuda"), 60)
    )


@pytest.mark.parametrize(
    ("k", "s_max", "expected"),
    [(0, 2.0, 0.0), (1, 2.0, 1.0), (2, 2.0, 4 / 3), (3, 3.0, 9 / 5), (100, 1.1, 110 / 100.1)],
)
def test_contention_model(k: int, s_max: float, expected: float) -> None:
    assert contention(k, s_max) == pytest.approx(expected)


def test_a_batch_gain_is_learned_only_from_jobs_that_had_the_device_to_themselves() -> None:
    """A batch-2 job measured beside three others ran at a fraction of its own speed;
    taken as its gain, it would make batch 2 look slower than batch 1."""
    solo, batched = ("tiny", "float16", 1, "cuda"), ("tiny", "float16", 2, "cuda")
    book = FootprintBook()
    book.observe_speed(solo, 100.0)
    book.observe_speed(batched, 55.0, alone=False)
    assert book.batch_gain(batched) == pytest.approx(1.8)  # still the built-in figure
    assert book.speed(batched) == pytest.approx(55.0)  # what durations are expected from
    book.observe_speed(batched, 190.0)
    assert book.batch_gain(batched) == pytest.approx(190.0 / 100.0)

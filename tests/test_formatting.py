"""provkit.formatting: the one way provkit writes durations, times, ages and slugs."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from provkit.formatting import ago, format_duration, format_time, is_guid, slug, text_or_none


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 s"),
        (45.4, "45 s"),
        (200, "3 min 20 s"),
        (180, "3 min"),
        (12 * 60 + 30, "12 min"),
        (3660, "1 h 01 min"),
        (2 * 86400 + 3 * 3600 + 59, "2 d 3 h"),
        (timedelta(minutes=5), "5 min"),
        (pd.Timedelta(hours=2), "2 h 00 min"),
        ("PT90S", "1 min 30 s"),
        (-30, "-30 s"),
    ],
)
def test_durations_read_the_way_people_say_them(value, text):
    assert format_duration(value) == text


@pytest.mark.parametrize("missing", [None, float("nan"), pd.NaT, pd.NA])
def test_a_missing_duration_or_time_shows_as_missing(missing):
    assert format_duration(missing) == ""
    assert format_duration(missing, missing="unknown") == "unknown"
    assert format_time(missing) == "-"
    assert ago(missing, datetime(2026, 1, 1, tzinfo=UTC)) == ""
    assert text_or_none(missing) is None


def test_times_are_utc_whatever_zone_they_came_in():
    assert format_time("2026-12-07T09:45:00+01:00") == "2026-12-07 08:45 UTC"
    assert format_time(datetime(2026, 12, 7, 8, 45, 5), seconds=True) == "2026-12-07 08:45:05 UTC"


def test_ages_in_the_past_and_the_future():
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    assert ago(now - timedelta(minutes=12), now) == "12 min ago"
    assert ago(now - timedelta(hours=3.5), now) == "3.5 h ago"
    assert ago(now - timedelta(days=4.2), now) == "4.2 days ago"
    assert ago(now + timedelta(hours=1), now) == "in 1.0 h"


def test_slugs_guids_and_text():
    assert slug("Dropbox Business (EU)") == "dropbox-business-eu"
    assert slug("", default="imported") == "imported"
    assert is_guid("8D3F2C44-1B2A-4C5D-9E8F-0A1B2C3D4E5F") and not is_guid("contoso.com")
    assert text_or_none("  x ", strip=True) == "x" and text_or_none("   ", strip=True) is None
    assert text_or_none(["a"]) == "['a']"

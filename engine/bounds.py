"""Range checks for the numbers and dates a request sends that reach the database.

Python's integers and dates go further than PostgreSQL's columns and than date arithmetic:
an id of 2**70 is not a bigint (the statement fails), and the day after 9999-12-31 does not
exist (`date + timedelta(days=1)` raises OverflowError). Every such value is parsed with one
of these, so the request gets a 400 saying the range instead of a 500.
"""
from __future__ import annotations

import datetime as dt

from rest_framework import serializers

from engine.errors import ValidationFailed

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1  # ids (bigint columns) and JSON ids
INT32_MAX = 2**31 - 1  # integer columns: counts, indexes, durations in ms
# Filters compare with the start of the next day: the last day has to have one.
DAY_MIN, DAY_MAX = dt.date(1, 1, 1), dt.date(9999, 12, 30)


def int_checked(value, name: str, *, minimum: int = BIGINT_MIN, maximum: int = BIGINT_MAX) -> int:
    """`value` if it is an integer (not a bool) in [minimum, maximum], else ValidationFailed naming `name`."""
    if type(value) is not int or not minimum <= value <= maximum:
        raise ValidationFailed(f"'{name}' must be an integer from {minimum} to {maximum}.", code="out_of_range")
    return value


def int_from_text(raw: str, name: str, *, minimum: int = BIGINT_MIN, maximum: int = BIGINT_MAX) -> int:
    """An integer in a query string's parameter: ASCII digits with an optional sign, in range."""
    digits = raw[1:] if raw[:1] in ("-", "+") else raw
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 19):
        raise ValidationFailed(f"'{name}' must be an integer from {minimum} to {maximum}.", code="out_of_range")
    return int_checked(int(raw), name, minimum=minimum, maximum=maximum)


def day_checked(value: dt.date, name: str) -> dt.date:
    if not DAY_MIN <= value <= DAY_MAX:
        raise ValidationFailed(f"'{name}' must be a day from {DAY_MIN} to {DAY_MAX}.", code="out_of_range")
    return value


class BigIntegerField(serializers.IntegerField):
    """An id, or any integer stored in a bigint column: the bigint range unless narrowed."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", BIGINT_MIN)
        kwargs.setdefault("max_value", BIGINT_MAX)
        super().__init__(**kwargs)


class PositiveIntegerField(serializers.IntegerField):
    """An index or a count stored in an integer column: 1 to 2**31 - 1 unless narrowed."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", INT32_MAX)
        super().__init__(**kwargs)


class DayField(serializers.DateField):
    """A UTC day that date arithmetic (the next day, the start of the day) cannot take out of range."""

    default_error_messages = {"out_of_range": f"Use a day from {DAY_MIN} to {DAY_MAX}."}

    def to_internal_value(self, value):
        day = super().to_internal_value(value)
        if not DAY_MIN <= day <= DAY_MAX:
            self.fail("out_of_range")
        return day

"""The row of a query that always returns exactly one (an aggregate, a function call, RETURNING):
psycopg types fetchone() as maybe None for every query; one_row says the row is there."""
from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow


def one_row(cursor: psycopg.Cursor[TupleRow]) -> TupleRow:
    row = cursor.fetchone()
    if row is None:   # not a query of that kind: say so rather than fail later on None[0]
        raise RuntimeError("a query that returns one row returned none")
    return row

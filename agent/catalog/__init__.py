"""The live schema, read one way for everyone: the drift gate, `prepare` and the snapshots.

model.py   what a table description holds (columns, keys, indexes, foreign keys), live or reviewed
query.py   ONE catalog query per system (`sql/<dialect>/catalog.sql`) turned into those values
keyset.py  which keys make a flow's keyset (its watermark columns) unique
"""

"""Worked examples: your own generator through the book (see book/reproducing.md)."""

"""Tests of nst_core.compress.scan, one file per module (a package, so their names cannot clash with other folders')."""

"""Measure MES: `mes bench <scenario>` starts a private stack and prints figures."""

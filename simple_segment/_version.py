"""The one place the package version is written (read by the build backend too)."""

VERSION = "0.1.0"

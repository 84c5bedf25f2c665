"""Network parts shared across components (IR-SE-50)."""

"""The scheduler process: fires each schedule's weekly edition once per period (not built yet)."""

"""Figures, the self-contained HTML report and the web dashboard of a study database."""

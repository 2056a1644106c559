"""Rendering of run records and studies: figures, SVG and the HTML report; it only draws.

What a report shows is computed by ``diagnose.report_data``; this package draws and writes it.

Imported as ``diagnose.reports`` (never top-level ``reports``): this folder stays at the
repository's root, and ``diagnose/reports`` is a symlink to it, so the wheel (templates
included), an editable install and the checkout itself all give the same name, and no
installed ``reports`` shadows a user's own package of that name (setup.cfg says why this
and not a ``package_dir`` mapping). Modules here import each other relatively.
"""

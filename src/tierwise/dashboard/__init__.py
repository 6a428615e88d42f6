"""The dashboard: server-rendered pages (Jinja2) over the same data as the API.

Pages live in the ``*_pages`` modules (``page`` holds what they share), installed by
:mod:`tierwise.dashboard.pages`; chart options are built in Python
(:mod:`tierwise.dashboard.charts`) and drawn in the browser by the bundled script
(``static/build/app.js``, built from ``web/`` with npm: ECharts with its SVG renderer).
"""

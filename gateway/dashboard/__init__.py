"""The usage dashboard's static files: one page, its script and style, and the vendored Chart.js (MIT, see
`static/chart.js-LICENSE.md`). Served by `gateway.api.dashboard`; nothing here runs on the server."""
